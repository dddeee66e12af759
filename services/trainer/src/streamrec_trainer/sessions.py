"""Sessions and the next-item protocol: session kNN against simple baselines, offline.

Sessions: a user's interactions (not ``remove_from_cart``) in time order, split where the user
was inactive for more than ``gap_s`` (30 min), consecutive repeats of one item collapsed (a
double click is not a next item). A click log whose rows carry their own session id is read as
``Sessions`` directly (``from_rows``).

Next-item protocol (as in Ludewig et al. 2021): sessions are split by time (those starting
before the cutoff are training, those starting after it the test); for every test session with
at least two clicks on items known in training, each click from the second on is predicted
from the prefix before it (most recent first): HR@K (the click is in the top K) and MRR@K
(1/rank, 0 outside the top K), averaged over predictions. Every predictor ranks the whole
training catalogue minus the prefix's own items. Predictors: ``sknn`` (V-SKNN with STAN's
sequence weighting: ``streamrec_shared.session_knn``), ``session_itemknn`` (cosine
co-occurrence of items in training sessions, summed over the prefix), ``last_itemknn`` (the
same, last item only) and ``popularity`` (sessions per item). Metrics also per segment
(``streamrec_shared.profile.segment_for`` of the prefix length, as the recommender segments
users by event count).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from streamrec_shared import session_knn
from streamrec_shared.profile import segment_for
from streamrec_trainer.dataset import Interactions

GAP_S = 1800.0
DENSE_ITEMS = 5000
"""Up to this many items the co-occurrence baselines read a dense similarity (faster)."""
NOT_SESSION_TYPES = frozenset({"remove_from_cart"})

Predictor = Callable[[NDArray[np.int64]], tuple[NDArray[np.int64], NDArray[np.float64]]]
"""prefix (t,) int64 items, most recent first -> (candidates (c,) int64, scores (c,))."""


@dataclass(frozen=True)
class Sessions:
    """indptr (S + 1,) int64, items (n,) int64 in time order within each session, start (S,)
    float64 unix seconds of each session's first click; sessions ordered by start."""

    indptr: NDArray[np.int64]
    items: NDArray[np.int64]
    start: NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.start.shape[0])

    def session(self, s: int) -> NDArray[np.int64]:
        return self.items[self.indptr[s] : self.indptr[s + 1]]

    def select(self, keep: NDArray[np.bool_]) -> Sessions:
        rows = np.flatnonzero(keep)
        lens = np.diff(self.indptr)[rows]
        pos = _positions(self.indptr[rows], lens)
        indptr = np.zeros(rows.size + 1, dtype=np.int64)
        np.cumsum(lens, out=indptr[1:])
        return Sessions(indptr, self.items[pos].astype(np.int64), self.start[rows])

    def pairs(self) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """(session (n,) int64, item (n,) int64) of every click."""
        return np.repeat(np.arange(len(self), dtype=np.int64), np.diff(self.indptr)), self.items


def _positions(starts: NDArray[np.int64], lens: NDArray[np.int64]) -> NDArray[np.int64]:
    """The concatenated ranges ``starts[i] : starts[i] + lens[i]``: (sum(lens),) int64."""
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shift: NDArray[np.int64] = np.repeat(starts.astype(np.int64) - (np.cumsum(lens) - lens), lens)
    out: NDArray[np.int64] = np.arange(total, dtype=np.int64) + shift
    return out


def from_rows(
    session_codes: NDArray[np.int64], item_codes: NDArray[np.int64], ts: NDArray[np.float64]
) -> Sessions:
    """Sessions from clicks (n,) that carry their session (``session_codes``); order within a
    session: time, then input order; consecutive repeats collapsed."""
    order = np.lexsort((np.arange(ts.size), ts, session_codes))
    s, i, t = session_codes[order], item_codes[order], ts[order]
    keep = np.ones(s.size, dtype=bool)
    keep[1:] = (s[1:] != s[:-1]) | (i[1:] != i[:-1])
    s, i, t = s[keep], i[keep], t[keep]
    new = np.ones(s.size, dtype=bool)
    new[1:] = s[1:] != s[:-1]
    starts = np.flatnonzero(new)
    first_ts = t[starts]
    by_start = np.argsort(first_ts, kind="stable")
    bounds = np.append(starts, s.size)
    lens = np.diff(bounds)[by_start]
    pos = _positions(bounds[by_start], lens)
    indptr = np.zeros(by_start.size + 1, dtype=np.int64)
    np.cumsum(lens, out=indptr[1:])
    return Sessions(indptr, i[pos].astype(np.int64), first_ts[by_start].astype(np.float64))


def sessionize(interactions: Interactions, gap_s: float = GAP_S) -> Sessions:
    """Sessions of a log (items as ``interactions.item_codes``): per user, split at gaps."""
    mask = ~np.isin(interactions.type_vocab[interactions.type_codes], list(NOT_SESSION_TYPES))
    users = interactions.user_codes[mask].astype(np.int64)
    items = interactions.item_codes[mask].astype(np.int64)
    ts = interactions.timestamps[mask]
    order = np.lexsort((np.arange(ts.size), ts, users))
    users, items, ts = users[order], items[order], ts[order]
    new = np.ones(users.size, dtype=bool)
    new[1:] = (users[1:] != users[:-1]) | (ts[1:] - ts[:-1] > gap_s)
    codes = np.cumsum(new) - 1
    return from_rows(codes.astype(np.int64), items, ts)


def split(sessions: Sessions, cutoff: float) -> tuple[Sessions, Sessions]:
    """(training: sessions starting before ``cutoff``, test: the others)."""
    before = sessions.start < cutoff
    return sessions.select(before), sessions.select(~before)


def cooccurrence_cosine(train: Sessions, n_items: int) -> sp.csr_matrix:
    """csr_matrix (n_items, n_items) float32: cosine of items' session sets, diagonal 0."""
    s, i = train.pairs()
    x = sp.csr_matrix((np.ones(s.size, dtype=np.float32), (s, i)), shape=(len(train), n_items))
    x.data[:] = 1.0
    x.sum_duplicates()
    x.data[:] = 1.0
    counts = np.asarray(x.sum(axis=0)).ravel()
    norm = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1.0)), 0.0).astype(np.float32)
    xn = sp.csr_matrix(x @ sp.diags(norm))
    sim = sp.csr_matrix(xn.T @ xn, dtype=np.float32)
    sim.setdiag(0.0)
    sim.eliminate_zeros()
    return sim


def predictors(
    train: Sessions,
    n_items: int,
    *,
    k: int = session_knn.K,
    sample: int = 500,
    sequence_decay: float | None = session_knn.SEQUENCE_DECAY,
) -> dict[str, Predictor]:
    """The protocol's predictors fitted on ``train`` (see the module docstring)."""
    s, i = train.pairs()
    index = session_knn.build_index(s, i, n_items, sample=sample)
    sim = cooccurrence_cosine(train, n_items)
    pop = np.bincount(np.unique(s * n_items + i) % n_items, minlength=n_items).astype(np.float64)
    pop_idx = np.flatnonzero(pop > 0).astype(np.int64)
    pop_top = pop_idx[np.argsort(-pop[pop_idx], kind="stable")][:500]

    def sknn(prefix: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        return session_knn.score(index, prefix, k=k, sequence_decay=sequence_decay)

    dense = sim.toarray() if n_items <= DENSE_ITEMS else None

    def rows(items: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        if dense is not None:
            total = dense[items].sum(axis=0)
            found_idx = np.flatnonzero(total > 0)
            return found_idx.astype(np.int64), total[found_idx].astype(np.float64)
        found = sp.csr_matrix(sim[items].sum(axis=0))
        return found.indices.astype(np.int64), found.data.astype(np.float64)

    def session_itemknn(prefix: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        return rows(np.unique(prefix))

    def last_itemknn(prefix: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        return rows(prefix[:1])

    def popularity(prefix: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        del prefix
        return pop_top, pop[pop_top]

    return {
        "sknn": sknn,
        "session_itemknn": session_itemknn,
        "last_itemknn": last_itemknn,
        "popularity": popularity,
    }


def top_k(
    candidates: NDArray[np.int64],
    scores: NDArray[np.float64],
    k: int,
    exclude: NDArray[np.int64],
    fill: NDArray[np.int64] | None = None,
) -> NDArray[np.int64]:
    """The ``k`` best candidates (ties by item index) not in ``exclude``, topped up from
    ``fill`` (a ranked list) when fewer scored: (<= k,) int64."""
    keep = ~np.isin(candidates, exclude) & (scores > 0)
    candidates, scores = candidates[keep], scores[keep]
    order = np.lexsort((candidates, -scores))[:k]
    out = candidates[order]
    if fill is not None and out.size < k:
        extra = fill[~np.isin(fill, exclude) & ~np.isin(fill, out)][: k - out.size]
        out = np.concatenate([out, extra])
    return out


def next_item_cases(
    test: Sessions, n_items: int, *, max_sessions: int | None = None, seed: int = 0
) -> list[tuple[NDArray[np.int64], int]]:
    """(prefix most recent first, next item) of every evaluated click: test clicks on items
    unknown in training are dropped first; sessions left with one click are skipped."""
    ids = np.arange(len(test))
    if max_sessions is not None and ids.size > max_sessions:
        ids = np.sort(np.random.default_rng(seed).choice(ids, max_sessions, replace=False))
    cases: list[tuple[NDArray[np.int64], int]] = []
    for s in ids.tolist():
        items = test.session(s)
        items = items[(items >= 0) & (items < n_items)]
        for t in range(1, items.size):
            cases.append((items[:t][::-1].copy(), int(items[t])))
    return cases


def evaluate(
    predict: Predictor,
    cases: Sequence[tuple[NDArray[np.int64], int]],
    *,
    k: int = 20,
    fill: NDArray[np.int64] | None = None,
) -> dict[str, Any]:
    """HR@k and MRR@k over ``cases``, overall and per segment of the prefix length."""
    hits: dict[str, list[float]] = {}
    rr: dict[str, list[float]] = {}
    for prefix, target in cases:
        cand, sc = predict(prefix)
        ranked = top_k(cand, sc, k, prefix, fill).tolist()
        rank = ranked.index(target) + 1 if target in ranked else 0
        for key in ("all", segment_for(prefix.size)):
            hits.setdefault(key, []).append(1.0 if rank else 0.0)
            rr.setdefault(key, []).append(1.0 / rank if rank else 0.0)
    return metrics_of(hits, rr, k)


def metrics_of(
    hits: Mapping[str, Sequence[float]], rr: Mapping[str, Sequence[float]], k: int
) -> dict[str, Any]:
    """{"hr@k", "mrr@k", "n", "segments": {segment: {...}}} from per-case hits and ranks."""

    def one(key: str) -> dict[str, float]:
        h, r = hits.get(key, []), rr.get(key, [])
        n = len(h)
        return {
            f"hr@{k}": float(np.mean(h)) if n else 0.0,
            f"mrr@{k}": float(np.mean(r)) if n else 0.0,
            "n": float(n),
        }

    out: dict[str, Any] = one("all")
    out["segments"] = {key: one(key) for key in sorted(hits) if key != "all"}
    return out


def next_item_report(
    train: Sessions,
    test: Sessions,
    n_items: int,
    *,
    k: int = 20,
    max_sessions: int | None = 2000,
    seed: int = 0,
    neighbours: int = session_knn.K,
    sample: int = 500,
    sequence_decay: float | None = session_knn.SEQUENCE_DECAY,
) -> dict[str, Any]:
    """Every predictor of the protocol on one split: {name: metrics}, plus "protocol"."""
    cases = next_item_cases(test, n_items, max_sessions=max_sessions, seed=seed)
    found = predictors(train, n_items, k=neighbours, sample=sample, sequence_decay=sequence_decay)
    pop_fill, _ = found["popularity"](np.zeros(0, dtype=np.int64))
    report: dict[str, Any] = {
        name: evaluate(p, cases, k=k, fill=pop_fill) for name, p in found.items()
    }
    report["protocol"] = {
        "k": k,
        "n_train_sessions": len(train),
        "n_test_sessions": len(test),
        "n_cases": len(cases),
        "filler": "popularity",
    }
    return report
