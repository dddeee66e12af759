"""Pure ranking: candidate selection, filters, business rules (campaign boosts) and blending.

Everything here works on item *indices* of one serving model's item space (rows of its
``item_factors``) and plain numpy arrays; it imports no I/O client and keeps no state, so the
rules can be read and tested on their own.

Conventions
    ``Ranked.indices`` (m,) int64 and ``Ranked.scores`` (m,) float32 are always sorted by
    descending score, ties by ascending index, and never hold -inf/NaN scores.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

NEG_INF = np.float32(-np.inf)
SAMPLE = 2048
"""Sample size used by ``top_candidates`` to find a score threshold."""
_SAMPLE_AT = np.sort(np.random.default_rng(0).random(SAMPLE))
"""(SAMPLE,) float64 fixed uniform draws in [0, 1): ``top_candidates`` samples positions
``_SAMPLE_AT * n``. Random rather than strided: item orders are often periodic (ids assigned
round-robin over categories), and a stride in step with the period samples one category only,
whose threshold then keeps far too few or far too many items."""
HEAD = 4096
"""Items ``ExactScorer`` scores first (largest norms) to bound the rest."""
DENSE_SUM = 16
"""``neighbour_candidates`` sums into a dense per-item array when the item space is at most
this many times the neighbour entries it adds, else sorts the entries (``np.unique``).
Measured (3,390 items, one thread, the sums alone): 50 recent items x 200 neighbours 0.39 vs
3.8 ms, 200 x 200 1.4 vs 9.2 ms (machine shared with a benchmark; the ratio is what
matters)."""


@dataclass(frozen=True)
class Ranked:
    """A ranked list: indices (m,) int64 best first, scores (m,) float32."""

    indices: NDArray[np.int64]
    scores: NDArray[np.float32]

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    @classmethod
    def empty(cls) -> Ranked:
        return cls(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))

    @classmethod
    def of(cls, indices: ArrayLike, scores: ArrayLike) -> Ranked:
        """Sort (indices, scores) best first, dropping -inf/NaN scores."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        sc = np.asarray(scores, dtype=np.float32).reshape(-1)
        ok = sc > NEG_INF
        if not ok.all():
            idx, sc = idx[ok], sc[ok]
        order = np.lexsort((idx, -sc))
        return cls(idx[order], sc[order])

    @classmethod
    def ordered(cls, indices: ArrayLike, scores: ArrayLike) -> Ranked:
        """A list already best first (e.g. a trending list): keeps the given order."""
        return cls(
            np.asarray(indices, dtype=np.int64).reshape(-1),
            np.asarray(scores, dtype=np.float32).reshape(-1),
        )

    def head(self, k: int) -> Ranked:
        return Ranked(self.indices[:k], self.scores[:k])


@dataclass(frozen=True)
class ItemFilter:
    """What one request may recommend.

    blocked: (n,) bool or None, True for items never to recommend (inactive, out of stock,
    unknown to the catalogue). allowed: (n,) bool or None, True for items the request accepts
    (``category=``); None accepts all. exclude: (e,) int64 sorted unique per-request exclusions
    (purchased items, ``exclude=``, optionally viewed items).
    """

    blocked: NDArray[np.bool_] | None = None
    allowed: NDArray[np.bool_] | None = None
    exclude: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    blocked_idx: NDArray[np.int64] | None = None
    """Optional ``flatnonzero(blocked)`` (b,) int64: a cheaper dense mask when few are blocked."""

    @classmethod
    def build(
        cls,
        *,
        blocked: NDArray[np.bool_] | None = None,
        allowed: NDArray[np.bool_] | None = None,
        exclude: Iterable[int] = (),
        blocked_idx: NDArray[np.int64] | None = None,
    ) -> ItemFilter:
        ex = np.fromiter(exclude, dtype=np.int64)
        if ex.size:
            ex = np.unique(ex)
            ex = ex[ex >= 0]
        return cls(blocked=blocked, allowed=allowed, exclude=ex, blocked_idx=blocked_idx)

    def keep(self, indices: NDArray[np.int64]) -> NDArray[np.bool_]:
        """(m,) bool: which of ``indices`` (m,) int64 this filter lets through."""
        ok = np.ones(indices.shape[0], dtype=np.bool_)
        if indices.size == 0:
            return ok
        if self.blocked is not None:
            inside = indices < self.blocked.shape[0]
            ok &= inside
            ok[inside] &= ~self.blocked[indices[inside]]
        if self.allowed is not None:
            inside = indices < self.allowed.shape[0]
            ok &= inside
            ok[inside] &= self.allowed[indices[inside]]
        if self.exclude.size:
            ok &= ~np.isin(indices, self.exclude, assume_unique=False)
        return ok

    def apply(self, ranked: Ranked) -> Ranked:
        """The part of ``ranked`` this filter lets through (order kept)."""
        ok = self.keep(ranked.indices)
        if ok.all():
            return ranked
        return Ranked(ranked.indices[ok], ranked.scores[ok])

    def mask_dense(self, scores: NDArray[np.float32]) -> None:
        """Set the scores (n,) float32 of filtered-out items to -inf, in place."""
        n = scores.shape[0]
        if self.blocked_idx is not None and self.blocked is not None:
            scores[self.blocked_idx[self.blocked_idx < n]] = NEG_INF
            scores[self.blocked.shape[0] :] = NEG_INF
        elif self.blocked is not None:
            np.putmask(scores[: self.blocked.shape[0]], self.blocked[:n], NEG_INF)
            scores[self.blocked.shape[0] :] = NEG_INF
        if self.allowed is not None:
            np.putmask(scores[: self.allowed.shape[0]], ~self.allowed[:n], NEG_INF)
            scores[self.allowed.shape[0] :] = NEG_INF
        if self.exclude.size:
            ex = self.exclude[self.exclude < n]
            scores[ex] = NEG_INF


def top_candidates(scores: NDArray[np.float32], c: int, item_filter: ItemFilter) -> Ranked:
    """Best ``c`` items of a dense score vector after the filter.

    scores: (n,) float32, one per item; modified in place (filtered items set to -inf).
    """
    item_filter.mask_dense(scores)
    if c <= 0 or scores.shape[0] == 0:
        return Ranked.empty()
    best = best_positions(scores, c)
    return Ranked.of(best, scores[best])


def best_positions(scores: NDArray[np.float32], c: int) -> NDArray[np.int64]:
    """Positions (<= c,) int64 of the ``c`` largest of ``scores`` (m,) float32, unordered."""
    n = scores.shape[0]
    if c >= n:
        return np.arange(n, dtype=np.int64)
    if n >= 16 * SAMPLE:
        # Exact, but cheaper than argpartition over n: a threshold from a sample keeps (with a
        # safety margin) a few times c items; if fewer than c pass, fall back.
        sample = scores[(_SAMPLE_AT * n).astype(np.int64)]
        m = min(SAMPLE, int(4 * c * SAMPLE / n) + 16)
        threshold = np.partition(sample, SAMPLE - m)[SAMPLE - m]
        if threshold > NEG_INF:
            cand = np.flatnonzero(scores >= threshold)
            if c <= cand.shape[0] <= 64 * c:
                return cand[np.argpartition(-scores[cand], c - 1)[:c]]
    return np.argpartition(-scores, c - 1)[:c].astype(np.int64)


@dataclass(frozen=True, eq=False)
class ExactScorer:
    """Exact top-c by inner product that reads only the items that can make the top c.

    The item factors are kept sorted by descending L2 norm. By Cauchy-Schwarz no item can
    score above ``|u| * |y|``, so once the ``HEAD`` largest-norm items have been scored (and
    filtered), the c-th best of them is a lower bound ``t`` of the true c-th best score and
    every item with ``|u| * |y| < t`` can be skipped: the matrix product runs over a prefix
    of the sorted factors only. With ALS-like factors the large-norm items are the ones users
    score highest, so the prefix is typically a small part of the catalogue; when the bound
    prunes nothing (a negative ``t``, heavy filtering) the whole catalogue is scored.

    order (n,) int64: item index at each sorted position; position (n,) int64 its inverse;
    factors (n, f) float32 = item_factors[order]; neg_norms (n,) float64 ascending: minus the
    norm of each sorted item (ascending, so ``searchsorted`` finds a prefix without a copy).
    """

    order: NDArray[np.int64]
    position: NDArray[np.int64]
    factors: NDArray[np.float32]
    neg_norms: NDArray[np.float64]

    @classmethod
    def build(cls, item_factors: NDArray[np.float32]) -> ExactScorer:
        """From item factors (n, f) float32."""
        norms = np.linalg.norm(item_factors.astype(np.float64), axis=1)
        order = np.argsort(-norms, kind="stable").astype(np.int64)
        position = np.empty_like(order)
        position[order] = np.arange(order.shape[0], dtype=np.int64)
        factors = np.ascontiguousarray(item_factors[order], dtype=np.float32)
        return cls(order, position, factors, -norms[order])

    def top(
        self,
        queries: NDArray[np.float32],
        filters: Sequence[ItemFilter],
        c: int | Sequence[int],
    ) -> list[Ranked]:
        """The best ``c`` items of each query (B, f) float32 after its filter (B filters);
        ``c`` one count for all queries or one per query."""
        n = self.order.shape[0]
        counts = [c] * len(filters) if isinstance(c, int) else list(c)
        head = min(n, HEAD)
        scores = products(queries, self.factors[:head])  # (B, head)
        q_norms = np.sqrt(np.einsum("ij,ij->i", queries, queries, dtype=np.float64))
        bounds: list[float] = []
        limits: list[int] = []
        for j, flt in enumerate(filters):
            row = scores[j]
            self._mask(row, 0, flt)
            bound = _kth_largest(row, counts[j])
            bounds.append(bound)
            limits.append(self._limit(bound, float(q_norms[j])))
        longest = max(limits)
        # From 4 queries on one product over the longest prefix beats a matrix-vector product
        # per query (each stopping at its own limit).
        rest = (
            products(queries, self.factors[head:longest])
            if longest > head and len(limits) >= 4
            else None
        )
        out: list[Ranked] = []
        for j, flt in enumerate(filters):
            row, c = scores[j], counts[j]
            if limits[j] > head:
                tail = (
                    rest[j, : limits[j] - head]
                    if rest is not None
                    else self.factors[head : limits[j]] @ queries[j]
                )
                self._mask(tail, head, flt)
                row = np.concatenate([row, tail])
            if c <= 0:
                best = np.empty(0, dtype=np.int64)
            elif bounds[j] > NEG_INF:
                # The head's c-th best is a lower bound of the c-th best overall: the top c
                # are among the few items that reach it.
                cand = np.flatnonzero(row >= bounds[j])
                best = cand[best_positions(row[cand], c)]
            else:
                best = best_positions(row, c)
            out.append(Ranked.of(self.order[best], row[best]))
        return out

    def _limit(self, bound: float, q_norm: float) -> int:
        """How many sorted items must be scored for a query of norm ``q_norm`` whose top c
        are known to score at least ``bound``."""
        n = int(self.order.shape[0])
        if not bound > 0.0 or q_norm <= 0.0:
            return n
        # 1e-4 relative margin: far above float32 rounding of the products (~1e-6), so an
        # item past the limit can never out-score the bound after rounding.
        need = bound * (1.0 - 1e-4) / q_norm
        return max(min(n, HEAD), int(np.searchsorted(self.neg_norms, -need, side="right")))

    def _mask(self, scores: NDArray[np.float32], start: int, flt: ItemFilter) -> None:
        """-inf in place for filtered items among sorted positions [start, start + m) whose
        scores (m,) float32 are given."""
        items = self.order[start : start + scores.shape[0]]
        if flt.blocked is not None and flt.blocked_idx is not None:
            if flt.blocked_idx.size:  # ten numpy calls even for nothing to mask
                self._mask_items(scores, start, flt.blocked_idx)
            if flt.blocked.shape[0] < self.order.shape[0]:
                np.putmask(scores, items >= flt.blocked.shape[0], NEG_INF)
        elif flt.blocked is not None:
            np.putmask(scores, _lookup(flt.blocked, items, outside=True), NEG_INF)
        if flt.allowed is not None:
            np.putmask(scores, ~_lookup(flt.allowed, items, outside=False), NEG_INF)
        if flt.exclude.size:
            self._mask_items(scores, start, flt.exclude)

    def _mask_items(
        self, scores: NDArray[np.float32], start: int, items: NDArray[np.int64]
    ) -> None:
        items = items[(items >= 0) & (items < self.order.shape[0])]
        pos = self.position[items] - start
        scores[pos[(pos >= 0) & (pos < scores.shape[0])]] = NEG_INF


def products(queries: NDArray[np.float32], block: NDArray[np.float32]) -> NDArray[np.float32]:
    """Inner products (B, m) float32, C-contiguous, of queries (B, f) with rows (m, f).

    Not ``queries @ block.T``: for small B OpenBLAS runs that product several times slower
    than ``block @ queries.T`` (m=4,096, f=64, one thread: 200 vs 70 us at B=2, 230 vs 96 us
    at B=8), and up to 3 queries a matrix-vector product each is faster still (25 us each).
    """
    b = queries.shape[0]
    if b < 4:
        out = np.empty((b, block.shape[0]), dtype=np.float32)
        for j in range(b):
            np.matmul(block, queries[j], out=out[j])
        return out
    return np.ascontiguousarray((block @ queries.T).T)


def _kth_largest(scores: NDArray[np.float32], k: int) -> float:
    """The k-th largest of ``scores`` (m,) float32; -inf when there are fewer than k."""
    m = int(scores.shape[0])
    if not 0 < k <= m:
        return float(NEG_INF)
    return float(np.partition(scores, m - k)[m - k])


def _lookup(
    mask: NDArray[np.bool_], items: NDArray[np.int64], *, outside: bool
) -> NDArray[np.bool_]:
    """``mask[items]`` (m,) bool, ``outside`` for items beyond the mask (b,) bool."""
    inside = items < mask.shape[0]
    out = np.full(items.shape[0], outside, dtype=np.bool_)
    out[inside] = mask[items[inside]]
    return out


def merge_max(lists: Iterable[Ranked]) -> Ranked:
    """Union of ranked lists, an item keeping its best score."""
    parts = [r for r in lists if len(r)]
    if not parts:
        return Ranked.empty()
    idx = np.concatenate([r.indices for r in parts])
    sc = np.concatenate([r.scores for r in parts])
    order = np.lexsort((-sc, idx))
    idx, sc = idx[order], sc[order]
    first = np.ones(idx.shape[0], dtype=np.bool_)
    first[1:] = idx[1:] != idx[:-1]
    return Ranked.of(idx[first], sc[first])


def normalise(ranked: Ranked) -> NDArray[np.float32]:
    """Min-max scores of a ranked list into [0, 1] (best = 1); (m,) float32; all 1 if flat."""
    if len(ranked) == 0:
        return np.empty(0, dtype=np.float32)
    hi, lo = float(ranked.scores[0]), float(ranked.scores[-1])
    if hi - lo <= 1e-12:
        return np.ones(len(ranked), dtype=np.float32)
    return ((ranked.scores - lo) / (hi - lo)).astype(np.float32)


def _neighbour_entries(
    neighbours: NDArray[np.int32],
    neighbour_sims: NDArray[np.float32],
    recent: NDArray[np.int64],
    weights: NDArray[np.float32],
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """The (item, weight_i * sim(i, item)) entries (e,) of the recent items' neighbour lists."""
    ok = (recent >= 0) & (recent < neighbours.shape[0])
    recent, weights = recent[ok], weights[ok]
    nb = neighbours[recent].reshape(-1).astype(np.int64)
    sims = (neighbour_sims[recent] * weights[:, None]).reshape(-1)
    valid = nb >= 0
    return nb[valid], sims[valid]


def neighbour_scores(
    neighbours: NDArray[np.int32],
    neighbour_sims: NDArray[np.float32],
    recent: NDArray[np.int64],
    weights: NDArray[np.float32],
) -> Ranked:
    """Item-kNN: score items by their similarity to the user's recent items.

    neighbours (n_items, N) int32 (-1 = none), neighbour_sims (n_items, N) float32,
    recent (r,) int64 item indices, weights (r,) float32 (recency/event weight of each).
    Score of item j = sum over recent items i of weight_i * sim(i, j). The recent items
    themselves are not excluded here (the filter decides).
    """
    nb, sims = _neighbour_entries(neighbours, neighbour_sims, recent, weights)
    if nb.size == 0:
        return Ranked.empty()
    uniq, inverse = np.unique(nb, return_inverse=True)
    total = np.zeros(uniq.shape[0], dtype=np.float64)
    np.add.at(total, inverse, sims)
    return Ranked.of(uniq, total.astype(np.float32))


def neighbour_candidates(
    neighbours: NDArray[np.int32],
    neighbour_sims: NDArray[np.float32],
    recent: NDArray[np.int64],
    weights: NDArray[np.float32],
    c: int,
    item_filter: ItemFilter,
) -> Ranked:
    """The best ``c`` items by ``neighbour_scores`` that ``item_filter`` lets through.

    When the item space is at most ``DENSE_SUM`` times the entries the lists add, the sums go
    into a dense (n_items,) array cut with ``top_candidates`` (no sort of every candidate),
    else through ``neighbour_scores``; both give the same list (up to the order of items
    tied at the ``c``-th place)."""
    nb, sims = _neighbour_entries(neighbours, neighbour_sims, recent, weights)
    if nb.size == 0:
        return Ranked.empty()
    n_items = neighbours.shape[0]
    if n_items > DENSE_SUM * nb.size:
        return item_filter.apply(
            neighbour_scores(neighbours, neighbour_sims, recent, weights)
        ).head(c)
    total = np.bincount(nb, weights=sims, minlength=n_items).astype(np.float32)
    total[np.bincount(nb, minlength=n_items) == 0] = NEG_INF
    return top_candidates(total, c, item_filter)


def weighted_mean(
    vectors: NDArray[np.float32], indices: NDArray[np.int64], weights: NDArray[np.float32]
) -> NDArray[np.float32] | None:
    """Weighted mean (f,) float32 of rows ``indices`` (r,) of ``vectors`` (n, f); None if none."""
    ok = (indices >= 0) & (indices < vectors.shape[0])
    if not ok.any():
        return None
    w = np.maximum(weights[ok].astype(np.float64), 0.0)
    if w.sum() <= 0:
        w = np.ones_like(w)
    out = (vectors[indices[ok]].astype(np.float64) * w[:, None]).sum(axis=0) / w.sum()
    result: NDArray[np.float32] = out.astype(np.float32)
    return result


def rank_fusion(lists: Sequence[tuple[Ranked, float]], *, k0: float = 60.0) -> Ranked:
    """Weighted reciprocal-rank fusion: score(j) = sum_l w_l / (k0 + rank_l(j)), rank from 1."""
    idx_parts: list[NDArray[np.int64]] = []
    score_parts: list[NDArray[np.float64]] = []
    for ranked, weight in lists:
        if len(ranked) == 0 or weight <= 0:
            continue
        ranks = np.arange(1, len(ranked) + 1, dtype=np.float64)
        idx_parts.append(ranked.indices)
        score_parts.append(weight / (k0 + ranks))
    if not idx_parts:
        return Ranked.empty()
    return _summed(np.concatenate(idx_parts), np.concatenate(score_parts))


def chain(lists: Sequence[Ranked]) -> Ranked:
    """The lists one after the other, each item once (first place kept): every item of a list
    ranks above the next list's; scores are made strictly decreasing (the first list keeps
    its own scores, later items go below the last one)."""
    seen: set[int] = set()
    idx: list[int] = []
    scores: list[float] = []
    floor = np.inf
    for n, ranked in enumerate(lists):
        for i, s in zip(ranked.indices.tolist(), ranked.scores.tolist(), strict=True):
            if i in seen:
                continue
            seen.add(i)
            value = s if n == 0 else floor - 1e-3
            floor = min(floor, value)
            idx.append(i)
            scores.append(value)
    return Ranked.ordered(idx, scores) if idx else Ranked.empty()


def blend(primary: Ranked, secondary: Ranked, secondary_weight: float) -> Ranked:
    """Blend two lists by normalised score: (1-w) * norm(primary) + w * norm(secondary)."""
    if len(secondary) == 0 or secondary_weight <= 0:
        return primary
    if len(primary) == 0:
        return secondary
    w = float(secondary_weight)
    idx = np.concatenate([primary.indices, secondary.indices])
    sc = np.concatenate([(1.0 - w) * normalise(primary), w * normalise(secondary)])
    return _summed(idx, sc)


def _summed(idx: NDArray[np.int64], scores: NDArray[np.float64]) -> Ranked:
    """Items (m,) int64 that may repeat, with scores (m,) float64: each item once with the
    sum of its scores, ranked."""
    uniq, inverse = np.unique(idx, return_inverse=True)
    total = np.bincount(inverse, weights=scores, minlength=uniq.shape[0])
    return Ranked.of(uniq, total.astype(np.float32))


@dataclass(frozen=True)
class Campaign:
    """A marketing boost of products and/or categories for a time window (unix seconds).

    ``boost`` is added to the normalised score of a boosted item (the best candidate scores 1
    and the weakest 0), so 0.1 nudges and 1.0 puts an item level with the best one.
    ``segment`` restricts the campaign to users of one segment (None: everyone).
    """

    name: str
    boost: float
    start: float
    end: float
    product_ids: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    segment: str | None = None
    enabled: bool = True

    def applies(self, now: float, segment: str) -> bool:
        return (
            self.enabled
            and self.start <= now < self.end
            and (self.segment is None or self.segment == segment)
        )


def campaign_boosts(
    campaigns: Iterable[Campaign],
    *,
    now: float,
    segment: str,
    index_of: Mapping[str, int],
    category_items: Mapping[str, NDArray[np.int64]],
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Items boosted for this request and by how much: (idx (b,) int64 sorted, boost (b,) f32).

    An item in several campaigns gets the largest boost. ``category_items`` maps a category to
    its item indices (n_c,) int64.
    """
    idx_parts: list[NDArray[np.int64]] = []
    boost_parts: list[NDArray[np.float32]] = []
    for c in campaigns:
        if not c.applies(now, segment) or c.boost == 0:
            continue
        items = [index_of[p] for p in c.product_ids if p in index_of]
        parts = [np.asarray(items, dtype=np.int64)]
        parts += [category_items[cat] for cat in c.categories if cat in category_items]
        members = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        idx_parts.append(members)
        boost_parts.append(np.full(members.shape[0], c.boost, dtype=np.float32))
    if not idx_parts:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    idx = np.concatenate(idx_parts)
    boost = np.concatenate(boost_parts)
    order = np.lexsort((-boost, idx))
    idx, boost = idx[order], boost[order]
    first = np.ones(idx.shape[0], dtype=np.bool_)
    first[1:] = idx[1:] != idx[:-1]
    return idx[first], boost[first]


def apply_boosts(
    candidates: Ranked,
    boost_idx: NDArray[np.int64],
    boost: NDArray[np.float32],
    boost_raw: NDArray[np.float32] | None = None,
) -> Ranked:
    """Re-rank candidates with campaign boosts on normalised scores.

    candidates: filtered candidate list (the items the base algorithm liked best).
    boost_idx (b,) int64 / boost (b,) float32: boosted items (already filtered by the caller).
    boost_raw (b,) float32 or None: the base algorithm's raw score for each boosted item, so a
    boosted item outside the candidates can still enter; None gives such items the weakest
    candidate's score.
    """
    if boost_idx.size == 0:
        return candidates
    if len(candidates) == 0:
        return Ranked.of(boost_idx, boost)
    hi, lo = float(candidates.scores[0]), float(candidates.scores[-1])
    span = hi - lo if hi - lo > 1e-12 else 1.0
    pos = {int(i): j for j, i in enumerate(candidates.indices)}
    norm = (candidates.scores.astype(np.float64) - lo) / span
    extra_idx: list[int] = []
    extra_score: list[float] = []
    for j, item in enumerate(boost_idx.tolist()):
        b = float(boost[j])
        at = pos.get(item)
        if at is not None:
            norm[at] += b
        else:
            raw = lo if boost_raw is None else float(boost_raw[j])
            extra_idx.append(item)
            extra_score.append(max(0.0, min(1.0, (raw - lo) / span)) + b)
    idx = np.concatenate([candidates.indices, np.asarray(extra_idx, dtype=np.int64)])
    sc = np.concatenate([norm, np.asarray(extra_score, dtype=np.float64)])
    return Ranked.of(idx, sc.astype(np.float32))


def demote(ranked: Ranked, items: NDArray[np.int64], factor: float) -> Ranked:
    """``ranked`` with the scores of ``items`` (m,) int64 scaled down by ``factor`` in [0, 1]
    (``s - (1 - factor) * |s|``: lower for negative scores too), re-sorted."""
    if items.size == 0 or len(ranked) == 0:
        return ranked
    hit = np.isin(ranked.indices, items)
    if not hit.any():
        return ranked
    scores = ranked.scores.astype(np.float32, copy=True)
    scores[hit] -= np.float32(1.0 - factor) * np.abs(scores[hit])
    return Ranked.of(ranked.indices, scores)
