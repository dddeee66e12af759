"""One training run: load the window, evaluate on a temporal holdout, gate, fit, publish.

1. load: interactions of the last ``window_days`` of event time from the archive, and the
   catalogue (products with metadata) from Postgres;
2. evaluate: fit every algorithm on the window minus its last ``holdout_fraction`` of event time
   and score them on that holdout (full catalogue, novel items, K = 5/10/20; a seeded sample of
   ``eval_max_users`` users when the holdout has more);
3. gate: the served algorithm's ``main_metric`` must not be worse than the active version's by
   more than ``gate_tolerance`` (relative). Offline figures of two versions come from different
   windows, so the gate compares like with like only as far as the windows overlap: it is a
   guard against a broken model, not a fine comparison;
4. fit every algorithm on the whole window (ALS warm-started from the evaluated factors for
   ``refit_iterations`` iterations) and publish: artifacts to the store, the registry row,
   activation and the models.v1 announcement.

Seconds per stage go to the stage histogram (wall) and to the run's metrics (``timings_s``:
wall and process CPU per stage).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg

from streamrec_shared import metrics
from streamrec_shared.artifact_store import ArtifactStore
from streamrec_trainer import warehouse
from streamrec_trainer.dataset import Dataset
from streamrec_trainer.evaluate import evaluate, temporal_holdout
from streamrec_trainer.models.als import AlsParams
from streamrec_trainer.models.fit import FittedModels, TrainParams, fit_all
from streamrec_trainer.models.itemknn import ItemKnnParams
from streamrec_trainer.registry import Registry
from streamrec_trainer.settings import TrainingSettings

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Outcome:
    status: str  # published | rejected | failed
    version: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None


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
) -> tuple[dict[str, Any], FittedModels | None]:
    """Fit every algorithm on the window minus the holdout and score it on the holdout (on a
    random sample of ``max_users`` of its users when there are more).

    Returns (offline metrics, the models fitted on the training part or None when the holdout
    has no user to evaluate); the models can warm-start the fit of the whole window.
    """
    holdout = temporal_holdout(
        dataset.interactions, test_fraction=holdout_fraction, max_users=max_users, seed=seed
    )
    if holdout.users.size == 0:
        return {"holdout": holdout.summary(), "algorithms": {}}, None
    fitted = fit_all(
        Dataset(holdout.train, dataset.catalog),
        params,
        reference_ts=holdout.cutoff,
        lists=False,
        exact_users=holdout.user_ids[holdout.users],
    )
    scorers = fitted.scorers()
    holdout.matrix(params.half_life_days)  # built once, before the threads share it
    threads = params.als.num_threads or os.cpu_count() or 1
    # ranking the catalogue is numpy work that releases the GIL: one algorithm per thread
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(scorers)))) as workers:
        futures = {
            name: workers.submit(evaluate, scorer, holdout, half_life_days=params.half_life_days)
            for name, scorer in scorers.items()
        }
        results = {name: future.result() for name, future in futures.items()}
    return {"holdout": holdout.summary(), "algorithms": results}, fitted


def evaluate_all(
    dataset: Dataset,
    params: TrainParams,
    holdout_fraction: float,
    *,
    max_users: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The offline metrics of ``evaluate_fitted``."""
    offline, _ = evaluate_fitted(dataset, params, holdout_fraction, max_users=max_users, seed=seed)
    return offline


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


def gate(
    offline: dict[str, Any], active_metrics: dict[str, Any] | None, settings: TrainingSettings
) -> tuple[bool, str]:
    """Whether the candidate may replace the active version, and why."""
    metric, algo = settings.main_metric, settings.served_algorithm
    candidate = offline.get("algorithms", {}).get(algo, {}).get(metric)
    if candidate is None:
        return False, f"no holdout users to compute {algo} {metric}"
    previous = (active_metrics or {}).get("algorithms", {}).get(algo, {}).get(metric)
    if previous is None:
        return True, f"{algo} {metric}={candidate:.4f}; no active version to compare with"
    floor = previous * (1.0 - settings.gate_tolerance)
    verdict = candidate >= floor
    return verdict, (
        f"{algo} {metric}={candidate:.4f} vs active {previous:.4f} "
        f"(floor {floor:.4f} at tolerance {settings.gate_tolerance:.0%})"
    )


async def run(
    pool: asyncpg.Pool, registry: Registry, store: ArtifactStore, settings: TrainingSettings
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
        offline, evaluated = await timings.run(
            "evaluate",
            lambda: evaluate_fitted(
                dataset,
                params,
                settings.holdout_fraction,
                max_users=settings.eval_max_users or None,
                seed=settings.random_state,
            ),
        )
        active = await registry.active()
        ok, why = gate(offline, active.metrics if active else None, settings)
        offline["gate"] = {
            "passed": ok,
            "reason": why,
            "against": active.version if active else None,
        }
        n = len(interactions)
        span: dict[str, Any] = {"data_start": window.start, "data_end": window.end}
        if not ok:
            offline["timings_s"] = timings.report()
            await registry.finish(
                version, status="rejected", metrics_=offline, notes=why, n_interactions=n, **span
            )
            return Outcome("rejected", version, offline, why)
        fitted = await timings.run(
            "fit",
            functools.partial(fit_window, dataset, params, evaluated, settings.refit_iterations),
        )
        evaluated = None  # free the evaluation models before the artifacts are written
        bundle = fitted.to_bundle(
            version, metrics=offline, extra={"unavailable_at_training": sorted(unavailable)}
        )
        uri = await timings.run("publish", functools.partial(store.save, bundle))
        offline["timings_s"] = timings.report()
        await registry.finish(
            version,
            status="published",
            metrics_=offline,
            artifact_uri=uri,
            notes=why,
            n_interactions=n,
            **span,
        )
        await registry.activate(version)
        metrics.TRAINER_LAST_PUBLISH.set(time.time())
        return Outcome("published", version, offline, why)
    except BaseException as exc:
        await registry.finish(
            version, status="failed", metrics_={}, notes=f"{type(exc).__name__}: {exc}"
        )
        raise
