"""``content``: the weighted mean content factor of the recent items, searched like a vector."""

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


def score(engine: Engine, job: Job, c: int) -> Ranked | None:
    model, recent, flt = job.model, job.recent, job.flt
    if model is None or flt is None:
        return None
    if model.content_rows is None or model.content_factors is None:
        return None
    rows = model.content_rows[recent[0]] if recent[0].size else recent[0]
    ok = rows >= 0
    q = ranking.weighted_mean(model.content_factors, rows[ok], recent[1][ok])
    if q is None:
        return None
    if model.ann is not None or model.content_index is None:
        return engine.search(model, job.ctx.catalog, q, c, flt, job.category)  # approximate
    if model.content_scan is not None:  # large catalogue: int8 first, same exact top c
        return model.content_scan.top(q, c, flt, model.content_factors, model.content_index)
    scores = np.full(model.n_items, ranking.NEG_INF, dtype=np.float32)
    scores[model.content_index] = model.content_factors @ q
    return ranking.top_candidates(scores, c, flt)


def available(model: ServingModel, has_vector: bool, has_recent: bool) -> bool:
    del has_vector
    return has_recent and model.content_factors is not None


register(ServingAlgorithm("content", score, available, basis="recent"))
