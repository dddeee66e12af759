"""Session kNN scoring (V-SKNN, Ludewig et al. 2021): the one implementation the trainer's
offline next-item protocol and the recommender's ``sknn`` scorer both run.

An index of past sessions: ``SessionIndex`` holds, for every session, its distinct items, and
for every item the (at most ``sample``) most recent sessions that contain it. To score the
current session (its items most recent first): every past session sharing an item is a
candidate neighbour, with similarity ``sum_j w_j`` over the current items ``j`` it contains,
``w_j`` a linear position weight (the most recent item 1, the oldest ``1/L``); the ``k`` most
similar are kept, and an item's score is the summed similarity of the neighbours containing it,
each neighbour's share decaying with the item's distance (in clicks) from the current item it
matched (STAN's sequence factor, Garg et al. 2019: ``sequence_decay``), so what shoppers clicked
right after the latest item leads.

Pure numpy: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

K = 100
"""Default neighbour sessions."""
SEQUENCE_DECAY = 1.0
"""Default ``score(sequence_decay=)``: chosen by the next-item protocol (README)."""
ARRAYS = ("session_indptr", "session_items", "item_indptr", "item_sessions")
"""The array names of an index (the ``sknn`` bundle file's arrays)."""


@dataclass(frozen=True)
class SessionIndex:
    """session_indptr (n_sessions + 1,) int64 and session_items (nnz,) int32: each session's
    distinct items in click order (sessions ordered by time, oldest first); item_indptr
    (n_items + 1,) int64 and item_sessions (m,) int32: each item's most recent sessions
    (ascending)."""

    session_indptr: NDArray[np.int64]
    session_items: NDArray[np.int32]
    item_indptr: NDArray[np.int64]
    item_sessions: NDArray[np.int32]

    @property
    def n_items(self) -> int:
        return int(self.item_indptr.shape[0] - 1)

    @property
    def n_sessions(self) -> int:
        return int(self.session_indptr.shape[0] - 1)

    def arrays(self) -> dict[str, NDArray[np.int64] | NDArray[np.int32]]:
        return {name: getattr(self, name) for name in ARRAYS}

    @staticmethod
    def scoring(arrays: Mapping[str, NDArray[np.generic]]) -> tuple[int, float | None]:
        """(k, sequence_decay) shipped with the arrays (``settings``: [k, decay], decay <= 0
        for None), else the defaults."""
        found = arrays.get("settings")
        if found is None or np.asarray(found).size < 2:
            return K, SEQUENCE_DECAY
        k, decay = (float(v) for v in np.asarray(found).ravel()[:2])
        return int(k), (decay if decay > 0 else None)

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, NDArray[np.generic]]) -> SessionIndex:
        return cls(
            session_indptr=np.asarray(arrays["session_indptr"], dtype=np.int64),
            session_items=np.asarray(arrays["session_items"], dtype=np.int32),
            item_indptr=np.asarray(arrays["item_indptr"], dtype=np.int64),
            item_sessions=np.asarray(arrays["item_sessions"], dtype=np.int32),
        )


def build_index(
    session_codes: NDArray[np.int64],
    item_codes: NDArray[np.int64],
    n_items: int,
    *,
    sample: int = 500,
) -> SessionIndex:
    """The index of sessions given as (session, item) pairs.

    session_codes (n,) int64: session of each pair, numbered in time order (0 = oldest);
    item_codes (n,) int64 in [0, n_items), in click order within a session. An item repeated
    in a session is kept at its first click. ``sample``: sessions kept per item, the most
    recent ones.
    """
    if session_codes.size == 0:
        return SessionIndex(
            np.zeros(1, np.int64), np.zeros(0, np.int32),
            np.zeros(n_items + 1, np.int64), np.zeros(0, np.int32),
        )  # fmt: skip
    n_sessions = int(session_codes.max()) + 1
    keys = session_codes.astype(np.int64) * n_items + item_codes.astype(np.int64)
    _, first = np.unique(keys, return_index=True)
    click = np.sort(first)  # first clicks, click order kept
    click = click[np.lexsort((click, session_codes[click]))]  # by session, then click order
    sess = session_codes[click].astype(np.int64)
    items = item_codes[click].astype(np.int32)
    session_indptr = np.zeros(n_sessions + 1, dtype=np.int64)
    np.cumsum(np.bincount(sess, minlength=n_sessions), out=session_indptr[1:])
    # postings: sort by (item, session); keep each item's last ``sample`` sessions
    order = np.lexsort((sess, items))
    p_items, p_sess = items[order], sess[order]
    counts = np.bincount(p_items, minlength=n_items)
    starts = np.zeros(n_items + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    rank_from_end = starts[p_items + 1] - np.arange(p_items.size) - 1
    keep = rank_from_end < sample
    kept_items = p_items[keep]
    item_indptr = np.zeros(n_items + 1, dtype=np.int64)
    np.cumsum(np.bincount(kept_items, minlength=n_items), out=item_indptr[1:])
    return SessionIndex(session_indptr, items, item_indptr, p_sess[keep].astype(np.int32))


def _ranges(
    indptr: NDArray[np.int64], rows: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Positions of the concatenated slices ``indptr[r]:indptr[r+1]`` of ``rows``, and each
    slice's length: ((total,) int64, (len(rows),) int64)."""
    starts, lens = indptr[rows], indptr[rows + 1] - indptr[rows]
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64), lens
    shift = np.repeat(starts - (np.cumsum(lens) - lens), lens)
    return np.arange(total, dtype=np.int64) + shift, lens


def position_weights(n: int) -> NDArray[np.float64]:
    """(n,) float64 weights of a session's items, most recent first: 1, (n-1)/n, ..., 1/n."""
    return (n - np.arange(n, dtype=np.float64)) / max(n, 1)


def score(
    index: SessionIndex,
    items: NDArray[np.int64],
    *,
    k: int = K,
    max_items: int = 10,
    sequence_decay: float | None = SEQUENCE_DECAY,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Session kNN scores for a session given by ``items`` (r,) int64, most recent first
    (repeats and out-of-range items ignored; only the ``max_items`` most recent count).

    ``sequence_decay`` (STAN's third factor, Garg et al. 2019): an item of a neighbour session
    counts ``exp(-(d - 1) / sequence_decay)`` of the similarity, ``d`` its distance in clicks
    from the neighbour's match (the most recent current item it contains), so the items clicked
    next to that item lead, as last-item kNN would have them; None: plain V-SKNN (every item of
    a neighbour counts its full similarity).

    Returns (candidates (c,) int64 ascending, scores (c,) float64 > 0); the session's own
    items are among them (the caller filters).
    """
    items = items[(items >= 0) & (items < index.n_items)]
    if items.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    _, first = np.unique(items, return_index=True)
    items = items[np.sort(first)][:max_items]
    weights = position_weights(items.size)
    pos, lens = _ranges(index.item_indptr, items)
    if pos.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    cand = index.item_sessions[pos]
    which = np.repeat(np.arange(items.size), lens)  # the current item each posting matched
    sessions, inverse = np.unique(cand, return_inverse=True)
    sims = np.bincount(inverse, weights=weights[which], minlength=sessions.size)
    match = np.full(sessions.size, items.size, dtype=np.int64)
    np.minimum.at(match, inverse, which)  # the most recent current item each session holds
    if sessions.size > k:
        top = np.argpartition(-sims, k - 1)[:k]
        sessions, sims, match = sessions[top], sims[top], match[top]
    pos, lens = _ranges(index.session_indptr, sessions.astype(np.int64))
    found = index.session_items[pos]
    gain = np.repeat(sims, lens)
    if sequence_decay is not None and found.size:
        owner = np.repeat(np.arange(sessions.size), lens)
        offset = pos - np.repeat(index.session_indptr[sessions.astype(np.int64)], lens)
        at_match = found == items[match][owner]
        match_pos = np.zeros(sessions.size, dtype=np.int64)
        match_pos[owner[at_match]] = offset[at_match]
        distance = np.abs(offset - match_pos[owner])
        gain = gain * np.exp(-(np.maximum(distance, 1) - 1) / sequence_decay)
    uniq, inverse = np.unique(found, return_inverse=True)
    totals = np.bincount(inverse, weights=gain, minlength=uniq.size)
    return uniq.astype(np.int64), totals.astype(np.float64)
