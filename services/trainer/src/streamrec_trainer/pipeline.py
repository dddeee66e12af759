"""One training run: load the window, evaluate on a temporal holdout, gate, fit, publish.

1. load: interactions of the last ``window_days`` of event time from the archive, and the
   catalogue (products with metadata) from Postgres;
2. evaluate: fit every algorithm on the window minus its last ``holdout_fraction`` of event time
   and score them on that holdout (full catalogue, novel items, K = 5/10/20; a seeded sample of
   ``eval_max_users`` users when the holdout has more); the training half-life of the
   ``half_life_algorithms`` is chosen on it from ``half_life_grid`` (``decay``:
   ``metrics.half_lives``, the version's ``params.half_lives``, the final fit's too);
   ``hybrid``'s member weights are searched
   on it (``models.hybrid.learn_weights``, kept when they beat the defaults out of sample:
   ``metrics.hybrid_weights``, shipped as the bundle's ``extra["hybrid_weights"]``); for the
   ``auto`` policy's priors, the standard error of each arm's per-user difference to the best
   arm (``metrics.paired_se``) and the arms' figures per user segment (``metrics.segments``);
3. gate (champion/challenger on one split): the active version is scored on the SAME holdout
   through its own published artifacts (``champion``: items it does not know are misses, users
   none of whose history it knows get its popularity), per algorithm at K = 5/10/20. The
   candidate is published when the served algorithm's ``main_metric`` is not worse than the
   champion's on that split by more than ``gate_tolerance`` (relative). When the champion was
   trained on part of the test period, both are compared on the test events after its data end
   (it would otherwise be judged on what it was fitted to). A split with fewer
   than ``gate_min_users`` evaluated users cannot decide: the run is "insufficient evidence" and
   publishes only when the training data grew by ``gate_data_growth`` (relative interactions)
   over the active version's, which its notes say;
   the repeat-consumption figures and the seen-items rule they imply (``repeats``) go with
   the version (``metrics.seen_rule``, and the bundle's ``extra["seen_rule"]`` for serving);
4. fit every algorithm on the whole window (ALS warm-started from the evaluated factors for
   ``refit_iterations`` iterations) and publish: artifacts to the store, the registry row,
   then a canary rollout next to the active version (``rollout``; ``canary_share``) or, for
   the first version or with ``canary_share`` 0, activation and the models.v1 announcement.

Seconds per stage go to the stage histogram (wall) and to the run's metrics (``timings_s``:
wall and process CPU per stage).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
import numpy as np

from streamrec_shared import metrics
from streamrec_shared.algorithms import REGISTRY
from streamrec_shared.artifact_store import ArtifactStore, open_version
from streamrec_shared.artifacts import ModelBundle
from streamrec_shared.settings import ArtifactSettings
from streamrec_trainer import champion as champion_eval
from streamrec_trainer import repeats, warehouse
from streamrec_trainer.dataset import Dataset, temporal_split
from streamrec_trainer.decay import choose_half_lives
from streamrec_trainer.evaluate import (
    evaluate,
    evaluate_users,
    make_holdout,
    paired_se,
    reported_metrics,
    segment_figures,
    user_event_counts,
)
from streamrec_trainer.models.als import AlsParams
from streamrec_trainer.models.fit import FittedModels, TrainParams, fit_all
from streamrec_trainer.models.hybrid import learn_weights
from streamrec_trainer.models.itemknn import ItemKnnParams
from streamrec_trainer.models.registry import trained
from streamrec_trainer.registry import Registry, Version
from streamrec_trainer.rollout import Rollouts
from streamrec_trainer.settings import TrainingSettings

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Outcome:
    status: str  # published | rejected | failed
    version: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None


def check_settings(settings: TrainingSettings) -> None:
    """Refuse settings that name an algorithm or a metric the trainer does not have (at
    startup, once the plug-ins are loaded: a typo would otherwise gate on no figure, reported
    as "insufficient evidence", or learn no half-life). Raises ``ValueError`` naming the
    setting and the known names."""
    metrics_known = reported_metrics()
    if settings.main_metric not in metrics_known:
        raise ValueError(
            f"training.main_metric: {settings.main_metric!r} is not evaluated "
            f"(evaluated: {', '.join(sorted(metrics_known))})"
        )
    known = sorted(REGISTRY.names())
    if settings.served_algorithm not in known:
        raise ValueError(
            f"training.served_algorithm: {settings.served_algorithm!r} is not an algorithm "
            f"(known: {', '.join(known)})"
        )
    fitted = {a.name for a in trained()}
    unknown = [name for name in settings.half_life_algorithms if name not in fitted]
    if unknown:
        raise ValueError(
            f"training.half_life_algorithms: {', '.join(map(repr, unknown))} not trained "
            f"(trained: {', '.join(sorted(fitted))})"
        )


def train_params(settings: TrainingSettings) -> TrainParams:
    return TrainParams(
        half_life_days=settings.half_life_days,
        als=AlsParams(
            factors=settings.factors,
            regularization=settings.regularization,
            alpha=settings.alpha,
            iterations=settings.iterations,
            random_state=settings.random_state,
            num_threads=settings.threads,
        ),
        itemknn=ItemKnnParams(num_threads=settings.threads),
        topn_n=settings.topn_k,
        topn_max_users=max(1, settings.topn_recent_users),
    )


class Timings:
    """Seconds per stage of one run: wall (into the stage histogram and the run's metrics) and
    CPU of the whole process (all threads) while the stage ran, which tells a stage that waits
    (for Postgres, or for cores other processes hold) from one that computes."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
            self.seconds[name] = round(self.seconds.get(name, 0.0) + elapsed, 3)
            self.cpu_seconds[name] = round(self.cpu_seconds.get(name, 0.0) + cpu, 3)
            metrics.TRAINER_STAGE_DURATION.labels(name).observe(elapsed)

    def report(self) -> dict[str, dict[str, float]]:
        return {"wall": dict(self.seconds), "cpu": dict(self.cpu_seconds)}

    async def run(self, name: str, fn: Callable[[], T]) -> T:
        """Run a CPU-bound stage in a thread, timed."""
        with self.stage(name):
            return await asyncio.to_thread(fn)


def evaluate_fitted(
    dataset: Dataset,
    params: TrainParams,
    holdout_fraction: float,
    *,
    max_users: int | None = None,
    seed: int = 0,
    champion: ModelBundle | None = None,
    paired: tuple[str, int] | None = None,
    half_life_algorithms: Sequence[str] = (),
    half_life_grid: Sequence[float | None] = (),
    half_life_z: float = 1.645,
) -> tuple[dict[str, Any], FittedModels | None]:
    """Fit every algorithm on the window minus the holdout and score it on the holdout (on a
    random sample of ``max_users`` of its users when there are more).

    ``champion``: the active version's bundle, scored on the same holdout through its own
    artifacts (``champion.evaluate_bundle``; under ``"champion"`` in the result); ``paired``
    (algorithm, K): also the paired per-user NDCG@K test of that algorithm
    (``champion.paired_ndcg``, under ``champion.paired``). ``half_life_algorithms`` with a
    ``half_life_grid``: their training half-lives are chosen on the holdout first
    (``decay.choose_half_lives``, under ``half_lives``; not at all when either is empty).

    Returns (offline metrics, the models fitted on the training part or None when the holdout
    has no user to evaluate); the models can warm-start the fit of the whole window, their
    ``params`` carry the chosen half-lives.
    """
    train, test, cutoff = temporal_split(dataset.interactions, holdout_fraction)
    holdout = make_holdout(train, test, cutoff, max_users=max_users, seed=seed)
    if holdout.users.size == 0:
        return {"holdout": holdout.summary(), "algorithms": {}}, None
    split = holdout
    champion_end = champion_eval.data_end(champion) if champion is not None else None
    if champion_end is not None and champion_end >= cutoff:
        # the champion was trained on part of the test period: both are compared on the
        # events it never saw (same training part, same users' histories)
        unseen = test.select(test.timestamps > champion_end)
        split = make_holdout(train, unseen, cutoff, max_users=max_users, seed=seed)
    scored = np.union1d(holdout.user_ids[holdout.users], split.user_ids[split.users])
    fitted = fit_all(
        Dataset(holdout.train, dataset.catalog),
        params,
        reference_ts=holdout.cutoff,
        lists=False,
        exact_users=scored,
    )
    x = holdout.matrix(params.half_life_days).matrix  # built once, before threads share it
    k = paired[1] if paired is not None else 20
    half_lives: dict[str, Any] | None = None
    if half_life_algorithms and half_life_grid:
        fitted, half_lives = choose_half_lives(
            fitted,
            Dataset(holdout.train, dataset.catalog),
            holdout,
            half_life_algorithms,
            half_life_grid,
            scoring_half_life=params.half_life_days,
            k=k,
            z_min=half_life_z,
        )
    learned: dict[str, Any] | None = None
    if "hybrid" in REGISTRY.served:  # its member weights, chosen on this holdout
        users = holdout.users
        learned = learn_weights(
            fitted.fusion_members(), users, x[users], holdout.targets, k=k, seed=seed
        )
        fitted = dataclasses.replace(fitted, hybrid_weights=learned["weights"])
    scorers = fitted.scorers()
    threads = params.als.num_threads or os.cpu_count() or 1
    # ranking the catalogue is numpy work that releases the GIL: one algorithm per thread
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(scorers)))) as workers:
        futures = {
            name: workers.submit(
                evaluate_users, scorer, holdout, half_life_days=params.half_life_days, k=k
            )
            for name, scorer in scorers.items()
        }
        done = {name: future.result() for name, future in futures.items()}
    results = {name: figures for name, (figures, _) in done.items()}
    offline: dict[str, Any] = {"holdout": holdout.summary(), "algorithms": results}
    # how surely the holdout ranks the bandit's arms, overall and per user segment: the
    # ``auto`` policy's priors are as strong as this evidence (serving.policy.offline_priors)
    arms = {name: done[name][1] for name in REGISTRY.arms if name in done}
    metric = f"ndcg@{k}"
    offline["paired_se"] = {metric: paired_se(arms)}
    offline["segments"] = segment_figures(arms, user_event_counts(holdout), metric)
    if half_lives is not None:
        offline["half_lives"] = half_lives
    if learned is not None:
        offline["hybrid_weights"] = learned
    if champion is not None:
        hl = params.half_life_days
        on_split = results
        if split is not holdout:
            on_split = {
                name: evaluate(sc, split, half_life_days=hl) for name, sc in scorers.items()
            }
        offline["champion"] = champion_eval.evaluate_bundle(
            champion, split, list(results), half_life_days=hl
        )
        known = champion_eval.columns(
            np.unique(dataset.interactions.item_vocab[dataset.interactions.item_codes]),
            champion.als.item_ids,
        )
        offline["champion"]["new_items"] = int((known < 0).sum())
        offline["champion"]["candidate"] = on_split
        offline["champion"]["split"] = {
            "targets_after": max(cutoff, champion_end or cutoff),
            "restricted_to_unseen": split is not holdout,
            **split.summary(),
        }
        if paired is not None and paired[0] in scorers and split.users.size:
            algo, k = paired
            offline["champion"]["paired"] = champion_eval.paired_ndcg(
                scorers[algo], champion, split, algo, k, half_life_days=hl
            )
    return offline, fitted


def fit_window(
    dataset: Dataset,
    params: TrainParams,
    evaluated: FittedModels | None,
    refit_iterations: int,
) -> FittedModels:
    """Fit every algorithm on the whole window; ALS warm-starts from the evaluated models with
    ``refit_iterations`` iterations, at most as many as a cold fit runs (0, or nothing
    evaluated: a cold fit)."""
    if evaluated is None or refit_iterations <= 0:
        return fit_all(dataset, params)
    iterations = min(refit_iterations, params.als.iterations)
    return fit_all(dataset, params, warm_start=evaluated, warm_iterations=iterations)


def _paired(settings: TrainingSettings) -> tuple[str, int] | None:
    """(algorithm, K) of the paired test when the gate's metric is an NDCG@K."""
    name, _, k = settings.main_metric.partition("@")
    return (settings.served_algorithm, int(k)) if name == "ndcg" and k.isdigit() else None


def _growth(n_interactions: int, active_n: int | None) -> float | None:
    """Relative growth of the training data over the active version's (None: unknown)."""
    if not active_n:
        return None
    return n_interactions / active_n - 1.0


def gate(
    offline: dict[str, Any],
    settings: TrainingSettings,
    *,
    active_version: int | None = None,
    n_interactions: int = 0,
    active_interactions: int | None = None,
) -> tuple[bool, str, dict[str, Any]]:
    """Whether the candidate may replace the active version, why, and the evidence.

    ``offline``: the candidate's evaluation with the champion's on the same split under
    ``"champion"`` (``evaluate_fitted``). The evidence (stored with the version under
    ``metrics.gate``) holds the decision, both figures of the decisive metric and, per algorithm
    both versions could score, candidate and champion at every K.
    """
    metric, algo = settings.main_metric, settings.served_algorithm
    champ: dict[str, Any] = offline.get("champion") or {}
    # the candidate on the comparison split (the events the champion never saw), else its own
    candidate_algos: dict[str, Any] = champ.get("candidate") or offline.get("algorithms", {})
    champ_algos: dict[str, Any] = champ.get("algorithms", {})
    comparison = {
        name: {
            "candidate": {k: v for k, v in values.items() if "@" in k},
            "champion": {k: v for k, v in champ_algos[name].items() if "@" in k},
        }
        for name, values in candidate_algos.items()
        if name in champ_algos
    }
    split = champ.get("split") or offline.get("holdout", {})
    evaluated = int(split.get("n_evaluated_users", 0))
    growth = _growth(n_interactions, active_interactions)
    evidence: dict[str, Any] = {
        "metric": metric,
        "algorithm": algo,
        "against": active_version,
        "candidate": candidate_algos.get(algo, {}).get(metric),
        "champion": champ_algos.get(algo, {}).get(metric),
        "tolerance": settings.gate_tolerance,
        "evaluated_users": evaluated,
        "min_users": settings.gate_min_users,
        "data_growth": None if growth is None else round(growth, 4),
        "comparison": comparison,
    }
    cand = evidence["candidate"]
    if active_version is None:
        evidence["decision"] = "no_champion"
        shown = "n/a" if cand is None else f"{cand:.4f}"
        return True, f"{algo} {metric}={shown}; no active version to compare with", evidence
    if settings.gate_tolerance >= 1.0:
        evidence["decision"] = "gate_off"
        return True, "gate_tolerance 1.0: published whatever the comparison says", evidence
    if cand is None or evaluated < settings.gate_min_users:
        evidence["decision"] = "insufficient_evidence"
        why = (
            f"insufficient evidence: {evaluated} evaluated holdout users < "
            f"{settings.gate_min_users}"
        )
        if growth is None or growth >= settings.gate_data_growth:
            grew = "unknown" if growth is None else f"{growth:+.0%}"
            return (
                True,
                (
                    f"{why}; published because the training data grew materially ({grew} "
                    f"interactions vs version {active_version}, threshold "
                    f"{settings.gate_data_growth:.0%})"
                ),
                evidence,
            )
        new_items = int(champ.get("new_items") or 0)
        if 0 < settings.gate_new_items <= new_items:
            evidence["decision"] = "insufficient_evidence_new_items"
            why += (
                f"; published because the training data has {new_items} products with "
                f"interactions that version {active_version} does not know"
            )
            return True, why, evidence
        return (
            False,
            (
                f"{why}; not published: the training data grew {growth:+.1%} vs version "
                f"{active_version} (< {settings.gate_data_growth:.0%})"
            ),
            evidence,
        )
    previous = evidence["champion"]
    if previous is None:
        evidence["decision"] = "champion_unscorable"
        return (
            True,
            (
                f"{algo} {metric}={cand:.4f}; active version {active_version} could not be scored "
                f"from its artifacts ({champ.get('error', f'no {algo} in its bundle')})"
            ),
            evidence,
        )
    floor = previous * (1.0 - settings.gate_tolerance)
    paired = champ.get("paired") or {}
    evidence["paired"] = paired or None
    z = paired.get("z")
    # below the floor AND (when the per-user differences are known) significantly below the
    # champion: a difference the holdout cannot tell from noise does not reject. A negative
    # tolerance demands an improvement: that one must be met on the mean.
    significant = z is None or z <= -settings.gate_z or settings.gate_tolerance < 0
    verdict = cand >= floor or not significant
    evidence["decision"] = "not_worse" if verdict else "worse"
    test = "" if z is None else f", paired z={z:+.2f} (rejects at <= {-settings.gate_z:+.2f})"
    why = (
        f"{algo} {metric}={cand:.4f} vs active version {active_version} {previous:.4f} on the "
        f"same holdout (floor {floor:.4f} at tolerance {settings.gate_tolerance:.0%}, "
        f"{evaluated} users{test})"
    )
    return verdict, why, evidence


def load_champion(
    active: Version | None, artifact_settings: ArtifactSettings | None
) -> tuple[ModelBundle | None, str | None]:
    """The active version's bundle through the one artifact reader (blocking), or why not."""
    if active is None:
        return None, None
    if active.artifact_uri is None:
        return None, "its artifacts were garbage-collected"
    try:
        return ModelBundle.load(open_version(active.artifact_uri, artifact_settings)), None
    except (OSError, ValueError, KeyError) as exc:  # unreadable: the gate cannot compare
        logger.warning("cannot load active version %s: %s", active.version, exc)
        return None, f"{type(exc).__name__}: {exc}"


async def run(
    pool: asyncpg.Pool,
    registry: Registry,
    store: ArtifactStore,
    settings: TrainingSettings,
    artifact_settings: ArtifactSettings | None = None,
    rollouts: Rollouts | None = None,
) -> Outcome:
    window = await warehouse.data_window(pool, settings.window_days)
    if window is None:
        return Outcome("failed", reason="the archive is empty")
    timings = Timings()
    with timings.stage("load"):
        interactions = await warehouse.load_interactions(pool, window)
        catalog, unavailable = await warehouse.load_catalog(pool)
    metrics.TRAINER_INTERACTIONS.set(len(interactions))
    if len(interactions) < settings.min_interactions:
        return Outcome(
            "failed", reason=f"{len(interactions)} interactions < min {settings.min_interactions}"
        )
    params = train_params(settings)
    dataset = Dataset(interactions, catalog)
    version = await registry.begin(params.to_dict())
    try:
        active = await registry.active()
        with timings.stage("load_champion"):
            champion, champion_error = await asyncio.to_thread(
                load_champion, active, artifact_settings
            )
        offline, evaluated = await timings.run(
            "evaluate",
            lambda: evaluate_fitted(
                dataset,
                params,
                settings.holdout_fraction,
                max_users=settings.eval_max_users or None,
                seed=settings.random_state,
                champion=champion,
                paired=_paired(settings),
                half_life_algorithms=settings.half_life_algorithms,
                half_life_grid=settings.half_life_grid,
                half_life_z=settings.half_life_z,
            ),
        )
        if evaluated is not None:  # the training half-lives chosen on the holdout
            params = evaluated.params
        champion = None
        with timings.stage("repeats"):
            measured = await asyncio.to_thread(
                repeats.measure, dataset.interactions, settings.holdout_fraction
            )
        offline["seen_rule"] = repeats.seen_rule(
            measured,
            exclude_below=settings.seen_exclude_below,
            keep_above=settings.seen_keep_above,
            min_events=settings.seen_min_events,
        )
        if champion_error is not None and active is not None:
            offline["champion"] = {"version": active.version, "error": champion_error}
        n = len(interactions)
        ok, why, evidence = gate(
            offline,
            settings,
            active_version=active.version if active else None,
            n_interactions=n,
            active_interactions=active.n_interactions if active else None,
        )
        offline["gate"] = {"passed": ok, "reason": why, **evidence}
        # the version's row, rejected or published: what it was trained on and with, the figures
        finish = functools.partial(
            registry.finish,
            version,
            metrics_=offline,
            notes=why,
            n_interactions=n,
            params=params.to_dict(),
            data_start=window.start,
            data_end=window.end,
        )
        if not ok:
            offline["timings_s"] = timings.report()
            await finish(status="rejected")
            return Outcome("rejected", version, offline, why)
        fitted = await timings.run(
            "fit",
            functools.partial(fit_window, dataset, params, evaluated, settings.refit_iterations),
        )
        if evaluated is not None:  # hybrid's weights as chosen on the holdout
            fitted = dataclasses.replace(fitted, hybrid_weights=evaluated.hybrid_weights)
        evaluated = None  # free the evaluation models before the artifacts are written
        sknn = fitted.models.get("sknn")
        next_item = getattr(sknn, "next_item", None)
        if next_item:  # the session protocol's figures beside the holdout's (docs: sessions.py)
            offline["next_item"] = next_item
        bundle = fitted.to_bundle(
            version,
            metrics=offline,
            extra={
                "unavailable_at_training": sorted(unavailable),
                "seen_rule": offline["seen_rule"],
            },
        )
        uri = await timings.run("publish", functools.partial(store.save, bundle))
        offline["timings_s"] = timings.report()
        await finish(status="published", artifact_uri=uri)
        if rollouts is not None and active is not None and settings.canary_share > 0:
            # a canary first: the online comparison promotes or rolls it back (rollout.py)
            await rollouts.start(version, active.version, settings.canary_share)
        else:
            await registry.activate(version)
        metrics.TRAINER_LAST_PUBLISH.set(time.time())
        return Outcome("published", version, offline, why)
    except BaseException as exc:
        await registry.finish(
            version, status="failed", metrics_={}, notes=f"{type(exc).__name__}: {exc}"
        )
        raise
