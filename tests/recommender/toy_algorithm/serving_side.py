"""The toy algorithm's recommender module: scores every item by the array its trainer shipped."""

from __future__ import annotations

from typing import Any

import numpy as np

from streamrec_recommender.serving import ranking
from streamrec_recommender.serving.model import ServingModel
from streamrec_recommender.serving.ranking import Ranked
from streamrec_recommender.serving.scorers import ServingAlgorithm, register


def score(engine: Any, job: Any, c: int) -> Ranked | None:
    del engine
    model: ServingModel | None = job.model
    if model is None or job.flt is None or "toy" not in model.arrays:
        return None
    shipped = model.arrays["toy"]["scores"]
    scores = np.full(model.n_items, ranking.NEG_INF, dtype=np.float32)
    scores[: shipped.shape[0]] = shipped  # trained items first in serving space
    return ranking.top_candidates(scores, c, job.flt)


def available(model: ServingModel, has_vector: bool, has_recent: bool) -> bool:
    del has_vector, has_recent
    return "toy" in model.arrays


register(ServingAlgorithm("toy", score, available))
