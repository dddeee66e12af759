"""``hybrid``: weighted rank fusion of its members, plus trending: the weights the trainer chose
on its holdout (``ServingModel.hybrid_weights``), else the registry's ``hybrid_members`` and
``TRENDING_WEIGHT``. A member weighted 0 is not run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamrec_recommender.serving import ranking
from streamrec_recommender.serving.ranking import Ranked
from streamrec_recommender.serving.scorers import ServingAlgorithm, register
from streamrec_shared.algorithms import REGISTRY

if TYPE_CHECKING:
    from streamrec_recommender.serving.context import Job
    from streamrec_recommender.serving.engine import Engine
    from streamrec_recommender.serving.model import ServingModel

TREND = "popular"
TRENDING_WEIGHT = 0.3
"""Weight of ``popular`` in the fusion (without learned weights), added only when a member
produced a list."""


def weights(model: ServingModel | None) -> tuple[tuple[tuple[str, float], ...], float]:
    """(members with their weights, trending's weight) for ``model``."""
    learned = model.hybrid_weights if model is not None else None
    if not learned:
        return REGISTRY.hybrid_members, TRENDING_WEIGHT
    members = tuple((n, learned.get(n, 0.0)) for n, _ in REGISTRY.hybrid_members)
    return members, learned.get(TREND, 0.0)


def score(engine: Engine, job: Job, c: int) -> Ranked | None:
    members, trend_weight = weights(job.model)
    parts: list[tuple[Ranked, float]] = []
    for name, weight in members:
        if weight <= 0:
            continue
        part = engine.run(name, job, c)
        if part is not None:
            parts.append((part, weight))
    if not parts:
        return None
    trend = engine.run(TREND, job, c) if trend_weight > 0 else None
    if trend is not None:
        parts.append((trend, trend_weight))
    return ranking.rank_fusion(parts)


register(ServingAlgorithm("hybrid", score, basis="vector", reads_als=True))
