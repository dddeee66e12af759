"""Pure profile maths: events -> profile update, event-time decay, segment, fold-in.

No I/O here. The store reads packed profiles, this module computes the new ones, the store
writes them back with a compare-and-set (see ``streamrec_shared.profile``).

Decay: every weight of a profile is valued at the profile's ``last_ts``, the newest event time
applied. A batch of events for one user with newest time ``T`` first decays the stored weights
from ``last_ts`` to ``T`` and adds each event's weight decayed from its own time to ``T``
(``streamrec_shared.weights`` semantics: late events are decayed, never amplified), so the
result does not depend on arrival order (up to float rounding and the size caps).
"""

from __future__ import annotations

import math
from collections.abc import Sequence, Set
from dataclasses import dataclass
from operator import itemgetter

import numpy as np
from numpy.typing import NDArray

from streamrec_shared.events import EVENT_TYPES, UserEvent
from streamrec_shared.profile import PackedProfile, event_digest, segment_for
from streamrec_shared.weights import SECONDS_PER_DAY, event_weight

VIEW = EVENT_TYPES.index("view")
PURCHASE = EVENT_TYPES.index("purchase")
TYPE_INDEX: dict[str, int] = {name: i for i, name in enumerate(EVENT_TYPES)}
MIN_WEIGHT = 1e-4
"""Items and categories whose decayed |weight| drops below this are forgotten (float16 floor)."""
_WEIGHT = itemgetter(1)
_NO_VECTOR: NDArray[np.float32] = np.zeros(0, dtype=np.float32)
SMALL = 48
"""Below this many entries plain Python sorting beats numpy's per-call overhead."""


@dataclass(frozen=True, slots=True)
class EventFacts:
    """What a profile needs from one ``events.v1`` record.

    ``product`` / ``category``: interned codes (category -1 when the product's category is not
    known yet). ``weight``: ``streamrec_shared.weights.event_weight``. ``ts``: event time, unix s.
    ``partition`` / ``offset``: its position in events.v1. ``received_at``: ingest's receive
    time, unix s (the clock of the event-id window, ``store.event_ids_key``).
    """

    digest: int
    type_index: int
    product: int
    category: int
    weight: float
    ts: float
    partition: int
    offset: int
    received_at: float = 0.0


def facts(event: UserEvent, product: int, category: int, partition: int, offset: int) -> EventFacts:
    """The ``EventFacts`` of a decoded event, given its interned codes and Kafka position."""
    return EventFacts(
        digest=event_digest(event.event_id),
        type_index=TYPE_INDEX[event.event_type],
        product=product,
        category=category,
        weight=event_weight(event.event_type, event.value),
        ts=event.timestamp.timestamp(),
        partition=partition,
        offset=offset,
        received_at=event.received_at.timestamp(),
    )


@dataclass(frozen=True, slots=True)
class ProfileConfig:
    """Size caps and decay of a profile (from ``ProfileSettings`` and ``ProcessorTuning``)."""

    half_life_days: float | None = 30.0
    max_items: int = 200
    max_history: int = 50
    max_categories: int = 16
    seen_ids: int = 16


@dataclass(frozen=True, slots=True)
class Update:
    """The outcome of ``apply_events`` for one user.

    ``profile`` is None when nothing was applied (every event a duplicate): nothing to write.
    ``applied`` are the events that changed the profile, in the order given.
    """

    profile: PackedProfile | None
    applied: tuple[EventFacts, ...]
    duplicates: int


def _decay(age_s: float, half_life_days: float | None) -> float:
    if half_life_days is None or age_s <= 0:
        return 1.0
    return math.exp2(-age_s / (SECONDS_PER_DAY * half_life_days))


def _top(weights: dict[int, float], cap: int) -> tuple[NDArray[np.uint32], NDArray[np.float32]]:
    """Entries with |w| >= MIN_WEIGHT, heaviest first (ties: insertion order), at most ``cap``."""
    if len(weights) <= SMALL:
        kept = [cw for cw in weights.items() if not -MIN_WEIGHT < cw[1] < MIN_WEIGHT]
        kept.sort(key=_WEIGHT, reverse=True)  # stable: ties keep insertion order
        del kept[cap:]
        small_codes, small_ws = zip(*kept, strict=True) if kept else ((), ())
        return np.array(small_codes, dtype=np.uint32), np.array(small_ws, dtype=np.float32)
    codes = np.fromiter(weights.keys(), dtype=np.int64, count=len(weights))
    w = np.fromiter(weights.values(), dtype=np.float64, count=len(weights))
    keep = np.abs(w) >= MIN_WEIGHT
    codes, w = codes[keep], w[keep]
    order = np.argsort(-w, kind="stable")[:cap]
    return codes[order].astype(np.uint32), w[order].astype(np.float32)


def _front(history: list[int], code: int, cap: int) -> list[int]:
    if history and history[0] == code:
        return history
    out = [code, *(c for c in history if c != code)]
    return out[:cap]


def apply_events(
    old: PackedProfile | None,
    events: Sequence[EventFacts],
    cfg: ProfileConfig,
    known: Set[int] = frozenset(),
) -> Update:
    """Apply one user's events (in partition order) to their stored profile.

    Exactly-once: an event at or below the stored (partition, offset) watermark is a replay
    (a redelivery of the same record, however many events came after it) and is skipped, as is
    one whose event-id digest is among the profile's ``seen`` digests (the newest few) or in
    ``known`` (the user's event ids of the last ``event_id_window_s``, read from Redis: a copy
    of an event re-sent by a client at a new offset, however many events came in between). The
    returned profile has ``rev + 1``, the new watermark and seen digests, and still the old
    vector (``fold_vectors`` replaces it).
    """
    base = old if old is not None else PackedProfile()
    partition, offset = base.partition, base.offset
    seen = base.seen.tolist()
    seen_set = set(seen) | known
    applied: list[EventFacts] = []
    duplicates = 0
    for e in events:
        if e.partition == partition and e.offset <= offset:
            duplicates += 1
            continue
        partition, offset = e.partition, e.offset
        if e.digest in seen_set:
            duplicates += 1
            continue
        seen_set.add(e.digest)
        seen.append(e.digest)
        applied.append(e)
    if not applied:
        return Update(None, (), duplicates)

    has_old = old is not None and base.event_count > 0
    newest = oldest = applied[0].ts
    for e in applied:
        if e.ts > newest:
            newest = e.ts
        elif e.ts < oldest:
            oldest = e.ts
    t_ref = max(base.last_ts, newest) if has_old else newest
    hl = cfg.half_life_days
    old_factor = _decay(t_ref - base.last_ts, hl) if has_old else 1.0

    def scaled(weights: NDArray[np.float32]) -> list[float]:
        out: list[float] = (weights * old_factor if old_factor != 1.0 else weights).tolist()
        return out

    items = dict(zip(base.item_codes.tolist(), scaled(base.item_weights), strict=True))
    cats: dict[int, float] | None = None
    views: list[int] | None = None
    purchases: list[int] | None = None
    counts = base.counts.tolist()
    for e in applied:
        w = e.weight * _decay(t_ref - e.ts, hl)
        items[e.product] = items.get(e.product, 0.0) + w
        if e.category >= 0:
            if cats is None:
                cats = dict(
                    zip(base.category_codes.tolist(), scaled(base.category_weights), strict=True)
                )
            cats[e.category] = cats.get(e.category, 0.0) + w
        if e.type_index == VIEW:
            views = _front(
                base.view_codes.tolist() if views is None else views, e.product, cfg.max_history
            )
        elif e.type_index == PURCHASE:
            purchases = _front(
                base.purchase_codes.tolist() if purchases is None else purchases,
                e.product,
                cfg.max_history,
            )
        counts[e.type_index] += 1

    item_codes, item_weights = _top(items, cfg.max_items)
    if cats is not None:
        cat_codes, cat_weights = _top(cats, cfg.max_categories)
    elif old_factor != 1.0:
        cat_codes, cat_weights = _top(
            dict(zip(base.category_codes.tolist(), scaled(base.category_weights), strict=True)),
            cfg.max_categories,
        )
    else:
        cat_codes, cat_weights = base.category_codes, base.category_weights
    event_count = sum(counts)
    keep_seen = seen[-cfg.seen_ids :] if cfg.seen_ids else []
    profile = PackedProfile(
        rev=base.rev + 1,
        segment=segment_for(event_count),
        model_version=base.model_version,
        partition=partition,
        offset=offset,
        first_ts=min(base.first_ts, oldest) if has_old else oldest,
        last_ts=t_ref,
        counts=np.array(counts, dtype=np.uint32),
        seen=np.array(keep_seen, dtype=np.uint64),
        item_codes=item_codes,
        item_weights=item_weights,
        view_codes=base.view_codes if views is None else np.array(views, dtype=np.uint32),
        purchase_codes=(
            base.purchase_codes if purchases is None else np.array(purchases, dtype=np.uint32)
        ),
        category_codes=cat_codes,
        category_weights=cat_weights,
        vector=base.vector,
    )
    return Update(profile, tuple(applied), duplicates)


# --- fold-in --------------------------------------------------------------------------------
@dataclass(frozen=True)
class FoldModel:
    """One model version's ALS item space, ready for fold-in.

    item_factors (n_items, f) float32, rows are the model's items. base (f, f) float64 is
    ``Y^T Y + regularization * I`` (the precomputed gram plus the ridge), base_inv (f, f)
    float64 its inverse. code_to_index (n_codes,) int32 maps an interned product code to its
    row, -1 when the model lacks it.
    """

    version: int
    item_factors: NDArray[np.float32]
    base: NDArray[np.float64]
    base_inv: NDArray[np.float64]
    alpha: float
    regularization: float
    code_to_index: NDArray[np.int32]

    @property
    def factors(self) -> int:
        return int(self.item_factors.shape[1])

    def rows(self, codes: NDArray[np.uint32]) -> NDArray[np.int64]:
        """Model rows (n,) int64 of interned product codes (n,); -1 where the model lacks one."""
        c = codes.astype(np.int64)
        out = np.full(c.shape, -1, dtype=np.int64)
        inside = c < self.code_to_index.shape[0]
        out[inside] = self.code_to_index[c[inside]]
        return out


def build_fold_model(
    version: int,
    item_factors: NDArray[np.floating],
    regularization: float,
    alpha: float,
    item_codes: Sequence[int],
) -> FoldModel:
    """Precompute the gram for a model version.

    item_factors (n_items, f) float32 rows are items; ``item_codes[i]`` is the interned product
    code of row i (``streamrec_shared.profile`` ``sr:dict:p``).
    """
    y = np.ascontiguousarray(item_factors, dtype=np.float32)
    if len(item_codes) != y.shape[0]:
        raise ValueError("one code per item row is needed")
    y64 = y.astype(np.float64)
    base = y64.T @ y64
    base[np.diag_indices(y.shape[1])] += regularization
    codes = np.asarray(item_codes, dtype=np.int64)
    table = np.full(int(codes.max()) + 1 if codes.size else 0, -1, dtype=np.int32)
    table[codes] = np.arange(codes.size, dtype=np.int32)
    base_inv: NDArray[np.float64] = np.linalg.inv(base).astype(np.float64)
    return FoldModel(version, y, base, base_inv, float(alpha), float(regularization), table)


def fold_vectors(
    model: FoldModel, profiles: Sequence[PackedProfile], *, chunk_elements: int = 1 << 20
) -> list[NDArray[np.float32] | None]:
    """Fold each profile's positive-weight items into the model's item space.

    The same system as ``streamrec_shared.factors.fold_in`` (one implicit-ALS user step with
    ``c = 1 + alpha * w`` for net weights ``w > 0``), for all profiles of a batch at once:
    users are bucketed by their number of items (next power of two), each bucket is padded
    to ``(B, S, f)`` and solved with one stacked ``numpy.linalg.solve`` (float64 throughout):
    ``_solve_full`` for buckets of ``S >= f`` items, ``_solve_small`` (the same solution
    through an ``S x S`` system) below. ``chunk_elements`` bounds the padded gather per step.
    Returns a (f,) float32 vector per profile, None where no positive item is in the model
    (such a profile keeps no vector).
    """
    n_profiles = len(profiles)
    out: list[NDArray[np.float32] | None] = [None] * n_profiles
    if not n_profiles:
        return out
    lengths = [len(p.item_codes) for p in profiles]
    codes = np.concatenate([p.item_codes for p in profiles])
    weights = np.concatenate([p.item_weights for p in profiles]).astype(np.float64)
    owner = np.repeat(np.arange(n_profiles), lengths)
    rows = model.rows(codes)
    keep = (rows >= 0) & (weights > 0)
    rows, weights, owner = rows[keep], weights[keep], owner[keep]
    if not rows.size:
        return out
    counts = np.bincount(owner, minlength=n_profiles)
    starts = np.cumsum(counts) - counts
    pos = np.arange(owner.size) - starts[owner]
    size_class = np.zeros(n_profiles, dtype=np.int64)
    has = counts > 0
    size_class[has] = 1 << np.ceil(np.log2(counts[has])).astype(np.int64)
    f = model.factors
    y_all = model.item_factors
    for size in np.unique(size_class[has]).tolist():
        users = np.flatnonzero(size_class == size)
        per_step = max(1, chunk_elements // (size * f))
        for lo in range(0, users.size, per_step):
            chunk = users[lo : lo + per_step]
            slot = np.full(n_profiles, -1, dtype=np.int64)
            slot[chunk] = np.arange(chunk.size)
            sel = slot[owner] >= 0
            r = slot[owner[sel]]
            c = pos[sel]
            idx = np.zeros((chunk.size, size), dtype=np.int64)
            w = np.zeros((chunk.size, size), dtype=np.float64)
            idx[r, c] = rows[sel]
            w[r, c] = weights[sel]
            y = y_all[idx].astype(np.float64)  # (B, S, f); padding rows carry weight 0
            solve = _solve_small if size < f and model.alpha > 0 else _solve_full
            x = solve(model, y, w).astype(np.float32)
            for k, i in enumerate(chunk.tolist()):
                out[i] = x[k]
    return out


def _solve_full(
    model: FoldModel, y: NDArray[np.float64], w: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Fold-in vectors (B, f) float64 of padded items y (B, S, f) with weights w (B, S).

    Builds each user's ``A = base + Y_u^T (alpha W) Y_u`` (B, f, f) and ``b = Y_u^T c`` and
    solves them stacked. Padding rows have w = 0 and c = 0.
    """
    yt = y.transpose(0, 2, 1)
    a = model.base + np.matmul(yt * (model.alpha * w)[:, None, :], y)
    conf = np.where(w > 0, 1.0 + model.alpha * w, 0.0)
    b = np.matmul(yt, conf[..., None])
    x: NDArray[np.float64] = np.linalg.solve(a, b)[..., 0]
    return x


def _solve_small(
    model: FoldModel, y: NDArray[np.float64], w: NDArray[np.float64]
) -> NDArray[np.float64]:
    """``_solve_full``'s vectors (B, f) float64 through S x S systems (Woodbury identity).

    With ``B0 = base``, ``D = alpha W`` (S,) and ``Z = Y_u B0^-1`` (S, f):
    ``A^-1 Y_u^T c = Z^T D^1/2 (I + D^1/2 Y_u Z^T D^1/2)^-1 D^-1/2 c``, an S x S positive
    definite system instead of an f x f one (far cheaper while S < f; needs alpha > 0).
    Padding rows (w = 0) get an identity row and a zero right-hand side, so they add nothing.
    """
    n_users, size, f = y.shape
    z = (y.reshape(-1, f) @ model.base_inv).reshape(n_users, size, f)
    s = np.sqrt(model.alpha * w)  # (B, S)
    m = np.matmul(z, y.transpose(0, 2, 1))  # (B, S, S): y_i^T B0^-1 y_j
    m *= s[:, :, None]
    m *= s[:, None, :]
    m[:, np.arange(size), np.arange(size)] += 1.0
    rhs = np.divide(1.0 + model.alpha * w, s, out=np.zeros_like(w), where=w > 0)
    v = np.linalg.solve(m, rhs[..., None])[..., 0] * s  # (B, S)
    x: NDArray[np.float64] = np.matmul(v[:, None, :], z)[:, 0, :]
    return x


def with_vector(
    profile: PackedProfile, model: FoldModel | None, vector: NDArray[np.float32] | None
) -> PackedProfile:
    """The profile carrying ``vector`` of ``model``'s version (no vector when it is None).

    Without a model the profile keeps whatever vector it had: it is tagged with its version,
    so readers never mix it with other factors.
    """
    if model is None:
        return profile
    return PackedProfile(
        rev=profile.rev,
        segment=profile.segment,
        model_version=0 if vector is None else model.version,
        partition=profile.partition,
        offset=profile.offset,
        first_ts=profile.first_ts,
        last_ts=profile.last_ts,
        counts=profile.counts,
        seen=profile.seen,
        item_codes=profile.item_codes,
        item_weights=profile.item_weights,
        view_codes=profile.view_codes,
        purchase_codes=profile.purchase_codes,
        category_codes=profile.category_codes,
        category_weights=profile.category_weights,
        vector=_NO_VECTOR if vector is None else vector,
    )
