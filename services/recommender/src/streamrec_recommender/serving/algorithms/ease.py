"""``ease``: the user's items times EASE's item-item weights, sparsified by the trainer
(``ease.npz``: each item's largest weights, the layout of item-kNN's neighbour lists), so the
score is the one item-kNN computes (``ranking.neighbour_candidates``), with 1.0 per item when the
model was fitted on binary interactions. EASE is a model of the whole history: it reads every
item the profile holds, not only the ``MAX_RECENT`` heaviest (on the Online Retail protocol
offline, NDCG@20 0.108 from the 50 heaviest vs 0.112 from all). Unavailable when the bundle has
no ``ease.npz`` (an older bundle, or a catalogue above EASE's ``max_items``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from streamrec_recommender.serving import ranking
from streamrec_recommender.serving.ranking import Ranked
from streamrec_recommender.serving.scorers import ServingAlgorithm, register

if TYPE_CHECKING:
    from streamrec_recommender.serving.context import Job
    from streamrec_recommender.serving.engine import Engine
    from streamrec_recommender.serving.model import ServingModel

NAME = "ease"


def score(engine: Engine, job: Job, c: int) -> Ranked | None:
    model = job.model
    if model is None or job.flt is None or NAME not in model.arrays or job.recent[0].size == 0:
        return None
    items, weights = engine.recent(model, job.ctx.profile, engine.fresh(job.req, job.ctx), None)
    arrays = model.arrays[NAME]
    if bool(arrays["binary"]):
        weights = np.ones_like(weights)
    found = ranking.neighbour_candidates(
        arrays["neighbours"], arrays["neighbour_scores"], items, weights, c, job.flt
    )
    return found if len(found) else None


def available(model: ServingModel, has_vector: bool, has_recent: bool) -> bool:
    del has_vector
    return has_recent and NAME in model.arrays


register(ServingAlgorithm(NAME, score, available, basis="recent"))
