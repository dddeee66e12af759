"""``hybrid``: weighted rank fusion of the registry's hybrid members, plus trending."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamrec_recommender.serving import ranking
from streamrec_recommender.serving.ranking import Ranked
from streamrec_recommender.serving.scorers import ServingAlgorithm, register
from streamrec_shared.algorithms import REGISTRY

if TYPE_CHECKING:
    from streamrec_recommender.serving.context import Job
    from streamrec_recommender.serving.engine import Engine

TRENDING_WEIGHT = 0.3
"""Weight of ``popular`` in the fusion, added only when a member produced a list."""


def score(engine: Engine, job: Job, c: int) -> Ranked | None:
    parts: list[tuple[Ranked, float]] = []
    for name, weight in REGISTRY.hybrid_members:
        part = engine.run(name, job, c)
        if part is not None:
            parts.append((part, weight))
    if not parts:
        return None
    trend = engine.run("popular", job, c)
    if trend is not None:
        parts.append((trend, TRENDING_WEIGHT))
    return ranking.rank_fusion(parts)


register(ServingAlgorithm("hybrid", score, basis="vector", reads_als=True))
