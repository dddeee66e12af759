"""One training run: load the window, evaluate on a temporal holdout, gate, fit, publish.

1. load: interactions of the last ``window_days`` of event time from the archive, and the
   catalogue (products with metadata) from Postgres;
2. evaluate: fit every algorithm on the window minus its last ``holdout_fraction`` of event time
   and score them on that holdout (full catalogue, novel items, K = 5/10/20);
3. gate: the served algorithm's ``main_metric`` must not be worse than the active version's by
   more than ``gate_tolerance`` (relative). Offline figures of two versions come from different
   windows, so the gate compares like with like only as far as the windows overlap: it is a
   guard against a broken model, not a fine comparison;
4. fit every algorithm on the whole window and publish: artifacts to the store, the registry
   row, activation and the models.v1 announcement.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg

from streamrec_shared import metrics
from streamrec_trainer import warehouse
from streamrec_trainer.dataset import Dataset
from streamrec_trainer.evaluate import evaluate, temporal_holdout
from streamrec_trainer.models.als import AlsParams
from streamrec_trainer.models.fit import TrainParams, fit_all
from streamrec_trainer.models.itemknn import ItemKnnParams
from streamrec_trainer.registry import Registry
from streamrec_trainer.settings import TrainingSettings
from streamrec_trainer.store import ArtifactStore

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


async def _stage(name: str, fn: Callable[[], T]) -> T:
    """Run a CPU-bound stage in a thread, timed into the stage histogram."""
    started = time.perf_counter()
    try:
        return await asyncio.to_thread(fn)
    finally:
        metrics.TRAINER_STAGE_DURATION.labels(name).observe(time.perf_counter() - started)


def evaluate_all(
    dataset: Dataset,
    params: TrainParams,
    holdout_fraction: float,
    *,
    max_users: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit on the window minus the holdout; metrics of every algorithm on the holdout (on a
    random sample of ``max_users`` of its users when there are more)."""
    holdout = temporal_holdout(
        dataset.interactions, test_fraction=holdout_fraction, max_users=max_users, seed=seed
    )
    if holdout.users.size == 0:
        return {"holdout": holdout.summary(), "algorithms": {}}
    fitted = fit_all(
        Dataset(holdout.train, dataset.catalog),
        params,
        reference_ts=holdout.cutoff,
        lists=False,
    )
    results = {
        name: evaluate(scorer, holdout, half_life_days=params.half_life_days)
        for name, scorer in fitted.scorers().items()
    }
    return {"holdout": holdout.summary(), "algorithms": results}


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
    started = time.perf_counter()
    interactions = await warehouse.load_interactions(pool, window)
    catalog, unavailable = await warehouse.load_catalog(pool)
    metrics.TRAINER_STAGE_DURATION.labels("load").observe(time.perf_counter() - started)
    metrics.TRAINER_INTERACTIONS.set(len(interactions))
    if len(interactions) < settings.min_interactions:
        return Outcome(
            "failed", reason=f"{len(interactions)} interactions < min {settings.min_interactions}"
        )
    params = train_params(settings)
    dataset = Dataset(interactions, catalog)
    version = await registry.begin(params.to_dict())
    try:
        offline = await _stage(
            "evaluate", lambda: evaluate_all(dataset, params, settings.holdout_fraction)
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
            await registry.finish(
                version, status="rejected", metrics_=offline, notes=why, n_interactions=n, **span
            )
            return Outcome("rejected", version, offline, why)
        fitted = await _stage("fit", lambda: fit_all(dataset, params))
        bundle = fitted.to_bundle(
            version, metrics=offline, extra={"unavailable_at_training": sorted(unavailable)}
        )
        uri = await _stage("publish", lambda: store.save(bundle))
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
