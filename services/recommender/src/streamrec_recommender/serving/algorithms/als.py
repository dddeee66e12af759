"""``als``: inner products of the user vector with the item factors (exact or ANN)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamrec_recommender.serving.ranking import Ranked
from streamrec_recommender.serving.scorers import ServingAlgorithm, register

if TYPE_CHECKING:
    from streamrec_recommender.serving.context import Job
    from streamrec_recommender.serving.engine import Engine
    from streamrec_recommender.serving.model import ServingModel


def score(engine: Engine, job: Job, c: int) -> Ranked | None:
    if job.u is None or job.model is None or job.flt is None:
        return None
    if job.als is not None:  # scored by the batcher with other jobs
        return job.als.head(c)
    return engine.search(job.model, job.ctx.catalog, job.u, c, job.flt, job.category)


def available(model: ServingModel, has_vector: bool, has_recent: bool) -> bool:
    del model, has_recent
    return has_vector


register(ServingAlgorithm("als", score, available, basis="vector", reads_als=True))
