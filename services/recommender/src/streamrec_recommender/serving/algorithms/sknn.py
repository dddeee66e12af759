"""``sknn``: session kNN (V-SKNN) over the user's latest items (``Job.session``: request
context, read-your-writes events, recent views; most recent first), the session's own items
left out. Arrays: ``model.arrays["sknn"]`` (``streamrec_shared.session_knn.SessionIndex``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from streamrec_recommender.serving.ranking import Ranked
from streamrec_recommender.serving.scorers import ServingAlgorithm, register
from streamrec_shared import session_knn

if TYPE_CHECKING:
    from streamrec_recommender.serving.context import Job
    from streamrec_recommender.serving.engine import Engine
    from streamrec_recommender.serving.model import ServingModel

NAME = "sknn"


def score(engine: Engine, job: Job, c: int) -> Ranked | None:
    del engine
    model, session = job.model, job.session
    if model is None or job.flt is None or session.size == 0 or NAME not in model.arrays:
        return None
    arrays = model.arrays[NAME]
    index = session_knn.SessionIndex.from_arrays(arrays)
    k, decay = session_knn.SessionIndex.scoring(arrays)
    cand, sc = session_knn.score(index, session, k=k, sequence_decay=decay)
    keep = ~np.isin(cand, session)
    found = job.flt.apply(Ranked.of(cand[keep], sc[keep].astype(np.float32))).head(c)
    return found if len(found) else None


def available(model: ServingModel, has_vector: bool, has_recent: bool) -> bool:
    del has_vector
    return has_recent and NAME in model.arrays


register(ServingAlgorithm(NAME, score, available, basis="recent"))
