"""``popular``: live trending in the model's item space, else the model's own popularity."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamrec_recommender.serving.ranking import Ranked
from streamrec_recommender.serving.scorers import ServingAlgorithm, register

if TYPE_CHECKING:
    from streamrec_recommender.serving.context import Job
    from streamrec_recommender.serving.engine import Engine


def score(engine: Engine, job: Job, c: int) -> Ranked | None:
    if job.model is None or job.flt is None:
        return None
    pop, _ = engine.popular_ranked(job.ctx, job.model, job.category, c * 4)
    return job.flt.apply(pop).head(c)


register(ServingAlgorithm("popular", score))
