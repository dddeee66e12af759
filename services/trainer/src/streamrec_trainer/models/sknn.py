"""``sknn``: session kNN (V-SKNN) for users with short or session-only history.

Training builds ``streamrec_shared.session_knn.SessionIndex`` from the window's sessions
(``streamrec_trainer.sessions``: a user's interactions split at 30 min of inactivity), in the
model's item space; the recommender scores the user's latest items (request context,
read-your-writes events, recent views) against it. The fitter also runs the next-item protocol
on its own window (sessions of the last ``test_days`` predicted from the index of the earlier
ones, against session item-kNN, last-item kNN and popularity); the result travels with the
bundle (``sknn.npz`` ``next_item``: JSON, and ``SknnModel.next_item``).

As a ``Scorer`` (the trainer's holdout, ``streamrec eval``) a user's training items, heaviest
first, are the session.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from streamrec_shared import session_knn
from streamrec_trainer import sessions
from streamrec_trainer.dataset import Interactions, index_of
from streamrec_trainer.models import registry

if TYPE_CHECKING:
    from streamrec_trainer.models.fit import FittedModels

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SknnParams:
    """gap_s: inactivity that ends a session; k: neighbour sessions; sequence_decay: see
    ``session_knn.score`` (None: plain V-SKNN); sample: sessions kept per
    item (the most recent); max_sessions: the most recent sessions indexed; test_days,
    eval_sessions, eval_train_sessions: the fitter's own next-item evaluation (the last
    test_days' sessions, a sample of eval_sessions of them, against an index of the
    eval_train_sessions before them; 0 days: none)."""

    gap_s: float = sessions.GAP_S
    k: int = session_knn.K
    sequence_decay: float | None = session_knn.SEQUENCE_DECAY
    sample: int = 500
    max_sessions: int = 1_000_000
    test_days: float = 1.0
    eval_sessions: int = 500
    eval_train_sessions: int = 50_000


@dataclass(frozen=True)
class SknnModel:
    index: session_knn.SessionIndex
    k: int
    sequence_decay: float | None = session_knn.SEQUENCE_DECAY
    next_item: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return "sknn"

    def score(self, users: NDArray[np.int64], user_items: sp.csr_matrix) -> NDArray[np.float32]:
        """(m, n_items) float32: each user's items, heaviest first, scored as one session."""
        del users
        rows = sp.csr_matrix(user_items)
        out = np.zeros((rows.shape[0], rows.shape[1]), dtype=np.float32)
        for r in range(rows.shape[0]):
            lo, hi = rows.indptr[r], rows.indptr[r + 1]
            items = rows.indices[lo:hi].astype(np.int64)
            order = np.argsort(-rows.data[lo:hi], kind="stable")
            cand, sc = session_knn.score(
                self.index, items[order], k=self.k, sequence_decay=self.sequence_decay
            )
            cand_ok = cand < out.shape[1]
            out[r, cand[cand_ok]] = sc[cand_ok]
        return out


def model_sessions(
    interactions: Interactions, item_ids: NDArray[np.str_], gap_s: float
) -> sessions.Sessions:
    """The window's sessions with items as columns of ``item_ids`` (items unknown there and
    sessions left empty are dropped)."""
    found = sessions.sessionize(interactions, gap_s)
    column = index_of(item_ids, interactions.item_vocab)
    s, i = found.pairs()
    mapped = column[i]
    ok = mapped >= 0
    ts = found.start[s[ok]]
    return sessions.from_rows(s[ok], mapped[ok], ts)


def fit_sknn(
    interactions: Interactions, item_ids: NDArray[np.str_], params: SknnParams
) -> SknnModel:
    n_items = int(item_ids.size)
    found = model_sessions(interactions, item_ids, params.gap_s)
    if len(found) > params.max_sessions:
        keep = np.zeros(len(found), dtype=bool)
        keep[-params.max_sessions :] = True
        found = found.select(keep)
    s, i = found.pairs()
    index = session_knn.build_index(s, i, n_items, sample=params.sample)
    report: dict[str, Any] = {}
    if params.test_days > 0 and len(found) > 1:
        cutoff = float(found.start.max()) - params.test_days * 86_400.0
        train, test = sessions.split(found, cutoff)
        if len(train) > params.eval_train_sessions:
            recent = np.zeros(len(train), dtype=bool)
            recent[-params.eval_train_sessions :] = True
            train = train.select(recent)
        if len(train) and len(test):
            report = sessions.next_item_report(
                train, test, n_items, max_sessions=params.eval_sessions,
                neighbours=params.k, sample=params.sample, sequence_decay=params.sequence_decay,
            )  # fmt: skip
            logger.info(
                "sknn next-item (%d cases): %s", report["protocol"]["n_cases"],
                {n: round(m.get("mrr@20", 0.0), 4) for n, m in report.items() if n != "protocol"},
            )  # fmt: skip
    return SknnModel(index, params.k, params.sequence_decay, report)


# --- registration (streamrec_trainer.models.registry) ------------------------------------------
def _fit(fitting: registry.Fitting, params: SknnParams) -> SknnModel:
    return fit_sknn(fitting.dataset.interactions, fitting.matrix.item_ids, params)


def _bundle(model: SknnModel, fitted: FittedModels) -> dict[str, NDArray[Any]]:
    del fitted
    decay = model.sequence_decay if model.sequence_decay is not None else 0.0
    return {
        **model.index.arrays(),
        "settings": np.asarray([model.k, decay], dtype=np.float64),
        "next_item": np.asarray(json.dumps(model.next_item)),
    }


def _offline(ctx: registry.OfflineContext, p: registry.Params) -> SknnModel:
    decay = p.get("sequence_decay", session_knn.SEQUENCE_DECAY)
    params = SknnParams(k=int(p["k"]), sample=int(p["sample"]), sequence_decay=decay, test_days=0.0)
    return fit_sknn(ctx.holdout.train, ctx.holdout.item_ids, params)


registry.register(
    registry.TrainerAlgorithm(
        "sknn",
        SknnParams,
        _fit,
        bundle=_bundle,
        offline={
            "sknn": registry.OfflineAdapter(
                registry.grid(k=[100], sample=[500], sequence_decay=[None, 1.0, 2.0]),
                _offline,
                order=60,
            )
        },
    )
)
