"""``itemknn``: neighbours of the user's recent items, weighted by recency and event."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamrec_recommender.serving import ranking
from streamrec_recommender.serving.ranking import Ranked
from streamrec_recommender.serving.scorers import ServingAlgorithm, register

if TYPE_CHECKING:
    from streamrec_recommender.serving.context import Job
    from streamrec_recommender.serving.engine import Engine
    from streamrec_recommender.serving.model import ServingModel


def score(engine: Engine, job: Job, c: int) -> Ranked | None:
    del engine
    model, recent = job.model, job.recent
    if model is None or job.flt is None:
        return None
    if model.neighbours is None or model.neighbour_sims is None or recent[0].size == 0:
        return None
    found = ranking.neighbour_candidates(
        model.neighbours, model.neighbour_sims, recent[0], recent[1], c, job.flt
    )
    return found if len(found) else None


def available(model: ServingModel, has_vector: bool, has_recent: bool) -> bool:
    del has_vector
    return has_recent and model.neighbours is not None


register(ServingAlgorithm("itemknn", score, available, basis="recent"))
