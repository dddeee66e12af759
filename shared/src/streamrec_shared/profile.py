"""The Redis layout of streamrec's derived state, its codecs, and a small async reader.

The stream processor is the only writer of these keys; the recommender reads them through this
module only (``ProfileReader``). Everything here is rebuildable from the Kafka topics.

Keys (all prefixed ``sr:``; single Redis, not Redis Cluster: the processor's Lua scripts touch
keys they compute, e.g. trending sets of a category)
------------------------------------------------------------------------------------------------
``sr:u:<user_id>``          STRING  packed user profile (``encode_profile`` / ``decode_profile``):
                                    weighted recent items, view / purchase history, category
                                    affinity, counts per event type, segment, profile vector and
                                    the model version it belongs to, event-time bounds, and the
                                    exactly-once bookkeeping (revision, last applied
                                    (partition, offset), digests of the last event ids).
``sr:ua:<user_id>``         STRING  user attributes from ``users.v1``: compact JSON
                                    ``{"a": {...attributes}, "t": updated_at unix s}``.
``sr:rc:<user_id>``         any     the recommender's per-user result cache (the recommender owns
                                    its type and content and should give it a TTL; use a HASH
                                    with one field per request variant so one DEL drops all).
                                    The processor DELs it atomically with every applied event of
                                    that user, so a recommendation never outlives the profile it
                                    was computed from.
``sr:dict:p``               LIST    interned product ids: the product id of code ``i`` is
                                    ``LINDEX sr:dict:p i``. Append-only, codes never change.
``sr:dict:p:ix``            HASH    product id -> code (decimal string).
``sr:dict:c`` / ``:ix``     LIST / HASH   the same for category names.
``sr:trend:g``              ZSET    global trending: member product id, score = forward-decayed
                                    popularity (see *Trending*); top-k = one ``ZREVRANGE``.
``sr:trend:c:<category>``   ZSET    trending within one category (same scores).
``sr:trend:held``           ZSET    the same scores for products the catalog has not described
                                    yet (their events overtook the description, or name no
                                    product at all): kept out of the lists readers page through,
                                    moved into ``sr:trend:g`` and the category by the first
                                    description.
``sr:trend:cats``           SET     categories that have a ``sr:trend:c:`` set.
``sr:trend:meta``           HASH    ``landmark`` (unix s, event time), ``tau`` (s), ``t`` (newest
                                    event time counted), ``renorms`` (how often rescaled).
``sr:trend:ver``            HASH    a version per trending list, ``g`` (global) and
                                    ``c:<category>``, INCR'ed by every script call that changes
                                    the list: readers poll it (``trending_versions``) and re-read
                                    only the lists that changed.
``sr:catalog``              HASH    product id -> compact JSON catalog state
                                    ``{"a": active, "s": in_stock, "c": category, "p": price,
                                    "t": updated_at unix s}`` (``CatalogState``).
``sr:unavail``              SET     product ids that are inactive or out of stock.
``sr:unavail:ver``          STRING  integer, INCR'ed in the same Lua script as every change of
                                    ``sr:unavail`` membership. A reader polls it (one GET, e.g.
                                    every 100-250 ms) and re-reads ``SMEMBERS`` only when it
                                    changed: ``ProfileReader.unavailable_if_changed``. Each change
                                    is also PUBLISHed on channel ``sr:catalog:changes`` (payload:
                                    the product id) for readers that prefer pub/sub.

Why product ids are interned
    200 recent items + 100 history entries as strings (``p000123``: 8 B with a separator) do not
    fit the 2 KB per-profile budget; as 3-byte codes they take 3 B each. Trending sets and the
    catalog hash keep plain product ids. ``ProfileReader`` resolves codes back to ids with an
    in-process cache of ``sr:dict:p`` that it extends with one ``LRANGE`` when it meets a code
    it has not seen, so callers only ever see product ids.

Profile codec (``PROFILE_FORMAT`` = 2, little-endian; see ``_HEADER``)
    header 48 + 4 * n_types B: magic u8 (0xA2), rev u32, segment u8, n_seen u8, dim u16,
    n_items u16, n_views u16, n_purchases u16, n_categories u16, model_version u32 (0 = no
    vector), partition i16 (-1 = none), offset i64, first_ts f64, last_ts f64, n_types u8,
    counts u32 x n_types (``streamrec_shared.events.EVENT_TYPES`` order), then the arrays:
    seen u64[n_seen] (8-byte blake2b digests of the newest event ids, newest last);
    codes u24[n_items + n_views + n_purchases + n_categories]: item codes (sorted by weight,
    descending), view history and purchase history (most recent first), category codes
    (descending); weights f16[n_items + n_categories]: item weights then category weights;
    vector f32[dim]. Codes are 3-byte unsigned integers (``MAX_CODE``: 16.7 M distinct ids).
    Item and category weights are net event weights (``streamrec_shared.weights``) decayed to
    ``last_ts``, the newest *event* time applied to the profile; ``UserProfile.weights_at``
    values them at a later event time. Size: 72 + 8 * n_seen + 5 * n_items + 3 * (n_views +
    n_purchases) + 5 * n_categories + 4 * dim bytes with six event types; with 16 seen, 200
    items, 50 views, 20 purchases, 8 categories and 64 factors that is 1,706 B, and
    ``MEMORY USAGE`` (Redis 6.2, jemalloc size class 1,792 B + key and object overhead) reports
    about 1,850 B per profile.

    The counters follow ``EVENT_TYPES``: the header says how many it holds, a profile written
    before a type was appended reads with 0 for it, and the next event rewrites it with every
    counter. Format 1 (magic 0xA1: the same header without ``n_types`` and exactly six
    counters) is still read, and replaced by format 2 on the user's next event; the
    compare-and-set works across both since it compares the stored bytes it read.

Exactly-once (how the processor writes ``sr:u:<user_id>``)
    The processor commits Kafka offsets only after a batch is in Redis (at-least-once), and
    makes redelivery harmless: a batch's events are grouped per user, each user's new profile
    is computed from the stored one, and one Lua script call (up to 100 users) does, per user and
    atomically: compare the stored prefix (magic + rev) with the one the new value was computed
    from; only if equal, SET the profile, DEL ``sr:rc:<user_id>`` and add that user's trending
    increments. A lost compare (another writer, e.g. a zombie worker during a rebalance) makes
    the processor re-read and recompute that user. Before computing, events at or below the
    profile's (partition, offset) watermark (redelivery after a crash or rebalance: a user's
    events all live in one partition) and events whose event-id digest is among the profile's
    ``seen`` digests (the same event id published twice, e.g. a client retry) are skipped.
    Readers never see a half-applied event; trending counts exactly what the profiles count.
    Limits: ``seen`` holds the newest 16 ids per user (a re-send after 16 newer events of the
    same user would count again), and after a change of the partition count the watermark of
    the old partition no longer applies (only ``seen`` protects across that change).

Trending (forward decay, Cormode et al. 2009)
    An event of weight ``w > 0`` at event time ``t`` adds ``w * exp((t - L) / tau)`` to the
    product's score, with landmark ``L`` and ``tau = half_life / ln 2`` from ``sr:trend:meta``.
    The decayed popularity at event time ``T`` is ``score * exp(-(T - L) / tau)``: one factor for
    every member, so the order of a set never needs rewriting and readers get top-k with one
    ``ZREVRANGE``. Late events simply add a smaller increment. ``L`` is set to the first event
    time ever counted. When ``(t - L) / tau`` would exceed ``RENORMALISE_AT`` (= 200, i.e.
    ~288 days at a 24 h half-life; scores stay below ~1e90, far from the float64 limit) the
    writing script renormalises atomically: it multiplies every score of every trending set by
    ``exp((L - t) / tau)``, drops scores below 1e-9, and sets ``L = t``. Readers divide by
    ``exp((meta.t - L) / tau)`` to report scores as "decayed weight as of the newest event".
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from redis.asyncio import Redis

from streamrec_shared.events import EVENT_TYPES

PREFIX = "sr:"
PROFILE_FORMAT = 2
PROFILE_MAGIC = 0xA2
_FORMAT1_MAGIC = 0xA1

PRODUCT_DICT = f"{PREFIX}dict:p"
PRODUCT_DICT_INDEX = f"{PREFIX}dict:p:ix"
CATEGORY_DICT = f"{PREFIX}dict:c"
CATEGORY_DICT_INDEX = f"{PREFIX}dict:c:ix"
TRENDING_GLOBAL = f"{PREFIX}trend:g"
TRENDING_HELD = f"{PREFIX}trend:held"
TRENDING_CATEGORIES = f"{PREFIX}trend:cats"
TRENDING_META = f"{PREFIX}trend:meta"
TRENDING_VERSIONS = f"{PREFIX}trend:ver"
CATALOG = f"{PREFIX}catalog"
UNAVAILABLE = f"{PREFIX}unavail"
UNAVAILABLE_VERSION = f"{PREFIX}unavail:ver"
CATALOG_CHANNEL = f"{PREFIX}catalog:changes"
EPOCH = f"{PREFIX}epoch"
"""HASH: ``id`` names the life of Redis's state (a new id after a loss), and one field
``p:<topic>:<partition>`` per input partition the stream processor has replayed from its
beginning into this epoch (``streamrec_stream_processor.epoch``). No TTL: never evicted."""

RENORMALISE_AT = 200.0
"""Largest ``(t - landmark) / tau`` before trending scores are rescaled (see module doc)."""
TRENDING_LISTS_PER_TRIP = 8
"""Trending lists read per round trip by ``ProfileReader.top_trending_lists``."""

Segment = Literal["new", "light", "heavy"]
SEGMENTS: tuple[Segment, ...] = ("new", "light", "heavy")
LIGHT_MIN_EVENTS = 5
HEAVY_MIN_EVENTS = 50


# --- key names ------------------------------------------------------------------------------
def profile_key(user_id: str) -> str:
    """``sr:u:<user_id>``: the packed user profile."""
    return f"{PREFIX}u:{user_id}"


def user_attributes_key(user_id: str) -> str:
    """``sr:ua:<user_id>``: the user's attributes from ``users.v1``."""
    return f"{PREFIX}ua:{user_id}"


def rec_cache_key(user_id: str) -> str:
    """``sr:rc:<user_id>``: the recommender's result cache, deleted on each user event."""
    return f"{PREFIX}rc:{user_id}"


def trending_key(category: str | None = None) -> str:
    """``sr:trend:g`` (global) or ``sr:trend:c:<category>``."""
    return TRENDING_GLOBAL if category is None else f"{PREFIX}trend:c:{category}"


def trending_version_field(category: str | None = None) -> str:
    """The field of ``sr:trend:ver`` that versions a trending list: ``g`` or ``c:<category>``."""
    return "g" if category is None else f"c:{category}"


# --- segment --------------------------------------------------------------------------------
def segment_for(event_count: int) -> Segment:
    """``new`` below ``LIGHT_MIN_EVENTS`` events, ``heavy`` from ``HEAVY_MIN_EVENTS``, else light.

    Unknown users (no profile) are ``new``. ``event_count`` counts every applied event.
    """
    if event_count >= HEAVY_MIN_EVENTS:
        return "heavy"
    if event_count >= LIGHT_MIN_EVENTS:
        return "light"
    return "new"


# --- catalog state and user attributes -----------------------------------------------------
@dataclass(frozen=True, slots=True)
class CatalogState:
    """What serving needs to know about a product. ``updated_at``: unix seconds."""

    active: bool
    in_stock: bool
    category: str
    price: float
    updated_at: float

    @property
    def available(self) -> bool:
        """Recommendable: active and in stock."""
        return self.active and self.in_stock


def encode_catalog_state(state: CatalogState) -> bytes:
    """Compact JSON ``{"a":1,"s":1,"c":"books","p":12.5,"t":1700000000.0}``."""
    doc = {
        "a": int(state.active),
        "s": int(state.in_stock),
        "c": state.category,
        "p": state.price,
        "t": state.updated_at,
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def decode_catalog_state(raw: bytes | str) -> CatalogState:
    doc = json.loads(raw)
    return CatalogState(
        active=bool(doc["a"]),
        in_stock=bool(doc["s"]),
        category=str(doc["c"]),
        price=float(doc["p"]),
        updated_at=float(doc["t"]),
    )


def encode_user_attributes(attributes: Mapping[str, Any], updated_at: float) -> bytes:
    """Compact JSON ``{"a": attributes, "t": updated_at unix s}``."""
    doc = {"a": dict(attributes), "t": updated_at}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def decode_user_attributes(raw: bytes | str) -> tuple[dict[str, Any], float]:
    """``(attributes, updated_at unix s)``."""
    doc = json.loads(raw)
    return dict(doc["a"]), float(doc["t"])


# --- the profile codec ----------------------------------------------------------------------
_HEADER = struct.Struct("<BIBBHHHHHIhqddB")  # then n_types u32 counters
_FORMAT1_HEADER = struct.Struct("<BIBBHHHHHIhqdd6I")  # read only
N_TYPES = len(EVENT_TYPES)
_COUNTS = struct.Struct(f"<{N_TYPES}I")
HEADER_BYTES = _HEADER.size + 4 * N_TYPES  # 72 with six event types
REV_PREFIX_BYTES = 5
"""The first 5 bytes (magic + rev) are what the writer's compare-and-set checks."""

_U32 = np.dtype("<u4")
_U64 = np.dtype("<u8")
_F16 = np.dtype("<f2")
_F32 = np.dtype("<f4")
_EMPTY_U32: NDArray[np.uint32] = np.zeros(0, dtype=np.uint32)
_EMPTY_U64: NDArray[np.uint64] = np.zeros(0, dtype=np.uint64)
_EMPTY_F32: NDArray[np.float32] = np.zeros(0, dtype=np.float32)
MAX_SEEN = 255
MAX_CODE = (1 << 24) - 1
"""Interned codes are stored in 3 bytes: at most 16,777,216 distinct product ids (or categories)."""
F16_MAX = 65504.0


def _pack_u24(codes: NDArray[np.uint32]) -> bytes:
    """uint32 codes (n,) as n little-endian 3-byte integers; raises if a code needs 4 bytes."""
    arr = np.asarray(codes, dtype=_U32)
    if arr.size and int(arr.max()) > MAX_CODE:
        raise ValueError(f"code above {MAX_CODE} cannot be packed into 3 bytes")
    return arr.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()


def _unpack_u24(raw: bytes, offset: int, n: int) -> NDArray[np.uint32]:
    """n 3-byte little-endian integers at ``offset`` of ``raw``: ndarray (n,) uint32."""
    out = np.zeros((n, 4), dtype=np.uint8)
    out[:, :3] = np.frombuffer(raw, dtype=np.uint8, count=3 * n, offset=offset).reshape(n, 3)
    return out.view(_U32).reshape(n)


def event_digest(event_id: str) -> int:
    """The 8-byte blake2b digest of an event id as an unsigned int (``seen`` entries)."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little")


@dataclass(slots=True)
class PackedProfile:
    """A user profile as stored: products and categories as interned uint32 codes.

    Treat instances and their arrays as immutable (decoded arrays may be read-only views of the
    Redis value); not frozen only because frozen dataclasses are 3x slower to build, and the
    processor builds several per event.

    item_codes (n_items,) uint32 and item_weights (n_items,) float32: net decayed weights valued
    at ``last_ts``, descending. view_codes (n_views,) / purchase_codes (n_purchases,) uint32,
    most recent first. category_codes (n_categories,) uint32 + category_weights float32 valued at
    ``last_ts``, descending. counts (n_types,) uint32 per event type in ``EVENT_TYPES`` order.
    vector (dim,) float32 in the ALS space of ``model_version`` (dim 0 and version 0: none).
    seen (n_seen,) uint64 ``event_digest`` of the newest applied event ids, newest last.
    ``partition`` / ``offset``: the events.v1 position of the newest applied event (-1: none).
    ``first_ts`` / ``last_ts``: oldest / newest applied event time, unix seconds.
    """

    rev: int = 0
    segment: Segment = "new"
    model_version: int = 0
    partition: int = -1
    offset: int = -1
    first_ts: float = 0.0
    last_ts: float = 0.0
    counts: NDArray[np.uint32] = field(default_factory=lambda: np.zeros(N_TYPES, dtype=np.uint32))
    seen: NDArray[np.uint64] = field(default_factory=lambda: _EMPTY_U64)
    item_codes: NDArray[np.uint32] = field(default_factory=lambda: _EMPTY_U32)
    item_weights: NDArray[np.float32] = field(default_factory=lambda: _EMPTY_F32)
    view_codes: NDArray[np.uint32] = field(default_factory=lambda: _EMPTY_U32)
    purchase_codes: NDArray[np.uint32] = field(default_factory=lambda: _EMPTY_U32)
    category_codes: NDArray[np.uint32] = field(default_factory=lambda: _EMPTY_U32)
    category_weights: NDArray[np.float32] = field(default_factory=lambda: _EMPTY_F32)
    vector: NDArray[np.float32] = field(default_factory=lambda: _EMPTY_F32)

    @property
    def event_count(self) -> int:
        return int(self.counts.sum())


def rev_prefix(profile: PackedProfile | None) -> bytes:
    """The stored prefix a compare-and-set expects; ``b""`` when no profile is stored yet."""
    if profile is None:
        return b""
    return struct.pack("<BI", PROFILE_MAGIC, profile.rev)


def encode_profile(p: PackedProfile) -> bytes:
    """Pack a profile (see the module doc for the byte layout). Weights are stored as float16."""
    if len(p.seen) > MAX_SEEN:
        raise ValueError(f"at most {MAX_SEEN} seen digests")
    if p.item_codes.shape != p.item_weights.shape:
        raise ValueError("item_codes and item_weights differ in length")
    if p.category_codes.shape != p.category_weights.shape:
        raise ValueError("category_codes and category_weights differ in length")
    header = _HEADER.pack(
        PROFILE_MAGIC,
        p.rev & 0xFFFFFFFF,
        SEGMENTS.index(p.segment),
        len(p.seen),
        len(p.vector),
        len(p.item_codes),
        len(p.view_codes),
        len(p.purchase_codes),
        len(p.category_codes),
        p.model_version,
        p.partition,
        p.offset,
        p.first_ts,
        p.last_ts,
        N_TYPES,
    )
    if len(p.counts) == N_TYPES:
        counts = np.asarray(p.counts, dtype=_U32)
    else:  # built by hand with fewer counters
        counts = np.zeros(N_TYPES, dtype=_U32)
        counts[: len(p.counts)] = p.counts[:N_TYPES]
    codes = np.concatenate((p.item_codes, p.view_codes, p.purchase_codes, p.category_codes))
    weights = np.concatenate((p.item_weights, p.category_weights))
    np.minimum(np.maximum(weights, -F16_MAX, out=weights), F16_MAX, out=weights)
    return b"".join(
        (
            header,
            counts.tobytes(),
            np.asarray(p.seen, dtype=_U64).tobytes(),
            _pack_u24(codes),
            weights.astype(_F16).tobytes(),
            np.asarray(p.vector, dtype=_F32).tobytes(),
        )
    )


def _unpack_header(raw: bytes) -> tuple[tuple[Any, ...], tuple[int, ...], int]:
    """``(the 14 fixed header fields, stored counters, offset of the arrays)`` of format 2 or 1.

    Raises ``ValueError`` on a foreign or truncated value."""
    magic = raw[0] if raw else None
    if magic == PROFILE_MAGIC and len(raw) >= _HEADER.size:
        *fields, n_types = _HEADER.unpack_from(raw)
        end = _HEADER.size + 4 * n_types
        if len(raw) >= end:
            if n_types == N_TYPES:
                counts = _COUNTS.unpack_from(raw, _HEADER.size)
            else:
                counts = struct.unpack_from(f"<{n_types}I", raw, _HEADER.size)
            return tuple(fields), counts, end
    elif magic == _FORMAT1_MAGIC and len(raw) >= _FORMAT1_HEADER.size:
        values = _FORMAT1_HEADER.unpack_from(raw)
        return values[:14], values[14:], _FORMAT1_HEADER.size
    raise ValueError(f"not a streamrec profile (format {PROFILE_FORMAT} or 1)")


def decode_profile(raw: bytes) -> PackedProfile:
    """Unpack ``encode_profile`` output. Raises ``ValueError`` on a foreign or truncated value.

    The arrays of the result may be read-only views of ``raw``; copy before modifying in place.
    """
    fields, stored_counts, pos = _unpack_header(raw)
    (
        _magic,
        rev,
        segment,
        n_seen,
        dim,
        n_items,
        n_views,
        n_purchases,
        n_categories,
        model_version,
        partition,
        offset,
        first_ts,
        last_ts,
    ) = fields
    n_codes = n_items + n_views + n_purchases + n_categories
    n_weights = n_items + n_categories
    expected = pos + 8 * n_seen + 3 * n_codes + 2 * n_weights + 4 * dim
    if len(raw) != expected:
        raise ValueError(f"profile has {len(raw)} bytes, header says {expected}")
    counts = np.zeros(N_TYPES, dtype=np.uint32)
    # a profile of a newer writer with more event types: the types this code knows
    n_known = min(N_TYPES, len(stored_counts))
    counts[:n_known] = stored_counts[:n_known]
    seen = np.frombuffer(raw, dtype=_U64, count=n_seen, offset=pos)
    pos += 8 * n_seen
    codes = _unpack_u24(raw, pos, n_codes)
    pos += 3 * n_codes
    weights = np.frombuffer(raw, dtype=_F16, count=n_weights, offset=pos).astype(np.float32)
    pos += 2 * n_weights
    vector = np.frombuffer(raw, dtype=_F32, count=dim, offset=pos)
    a = n_items
    b = a + n_views
    c = b + n_purchases
    return PackedProfile(
        rev=rev,
        segment=SEGMENTS[segment],
        model_version=model_version,
        partition=partition,
        offset=offset,
        first_ts=first_ts,
        last_ts=last_ts,
        counts=counts,
        seen=seen,
        item_codes=codes[:a],
        item_weights=weights[:a],
        view_codes=codes[a:b],
        purchase_codes=codes[b:c],
        category_codes=codes[c:],
        category_weights=weights[a:],
        vector=vector,
    )


def decode_vector(raw: bytes) -> tuple[int, NDArray[np.float32]] | None:
    """Only ``(model_version, vector (dim,) float32)`` of a packed profile; None without one."""
    fields = _unpack_header(raw)[0]
    dim, model_version = fields[4], fields[9]
    if dim == 0 or model_version == 0:
        return None
    vec = np.frombuffer(raw, dtype=_F32, count=dim, offset=len(raw) - 4 * dim)
    return int(model_version), vec.astype(np.float32)


# --- trending math (pure) -------------------------------------------------------------------
def trending_tau(half_life_s: float) -> float:
    """``tau = half_life / ln 2`` (seconds)."""
    return half_life_s / math.log(2.0)


def trending_increment(weight: float, event_ts: float, landmark: float, tau: float) -> float:
    """Forward-decay increment ``weight * exp((event_ts - landmark) / tau)``."""
    return weight * math.exp((event_ts - landmark) / tau)


def trending_value(score: float, at_ts: float, landmark: float, tau: float) -> float:
    """A forward-decayed score read as decayed weight at event time ``at_ts``."""
    return score * math.exp(-(at_ts - landmark) / tau)


def _trending_scale(meta: Sequence[bytes | None]) -> float:
    """The factor that reads ``sr:trend:*`` scores as decayed weights at the newest counted
    event time, from ``HMGET sr:trend:meta landmark tau t``."""
    landmark, tau, newest = meta
    if landmark is None or tau is None or newest is None:
        return 1.0
    return trending_value(1.0, float(newest), float(landmark), float(tau))


# --- the decoded, reader-facing profile ----------------------------------------------------
@dataclass(frozen=True)
class UserProfile:
    """A user's profile with product ids resolved.

    items: product ids, heaviest first; weights (n_items,) float32 their net decayed event
    weights valued at ``last_event_ts`` (may be <= 0 for a cancelled add_to_cart: such items
    carry no interaction). view_history / purchase_history: most recent first.
    category_affinity: category -> decayed weight at ``last_event_ts``, descending.
    vector (f,) float32 in the ALS space of ``model_version``; use it only when
    ``model_version`` equals the version you score with, otherwise fold ``items``/``weights``
    into your model yourself (``streamrec_shared.factors.fold_in``) or fall back.
    """

    user_id: str
    items: tuple[str, ...]
    weights: NDArray[np.float32]
    view_history: tuple[str, ...]
    purchase_history: tuple[str, ...]
    category_affinity: dict[str, float]
    counts: dict[str, int]
    event_count: int
    segment: Segment
    vector: NDArray[np.float32] | None
    model_version: int | None
    first_event_ts: float
    last_event_ts: float

    def weights_at(self, at_ts: float, half_life_days: float | None) -> NDArray[np.float32]:
        """``weights`` decayed further to the later event time ``at_ts``: (n_items,) float32."""
        if half_life_days is None or at_ts <= self.last_event_ts:
            return self.weights
        factor = 0.5 ** ((at_ts - self.last_event_ts) / 86_400.0 / half_life_days)
        return (self.weights * np.float32(factor)).astype(np.float32)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _binary(value: bytes | str) -> bytes:
    if isinstance(value, str):
        raise TypeError("profiles are binary: use a Redis client with decode_responses=False")
    return value


class CodeBook:
    """Interned names (``sr:dict:p`` or ``sr:dict:c``): code -> name with a local cache.

    The list is append-only, so the cache is only ever extended: one ``LRANGE`` fetches every
    code issued since the last sync.
    """

    def __init__(self, redis: Redis, list_key: str = PRODUCT_DICT) -> None:
        self._redis = redis
        self._key = list_key
        self._names: list[str] = []

    async def sync(self) -> None:
        fresh = await self._redis.lrange(self._key, len(self._names), -1)
        self._names.extend(_text(v) for v in fresh)

    async def names(self, codes: Iterable[int]) -> list[str]:
        """The names of ``codes``; codes unknown even after a sync map to ``""``."""
        wanted = [int(c) for c in codes]
        if wanted and max(wanted) >= len(self._names):
            await self.sync()
        n = len(self._names)
        return [self._names[c] if c < n else "" for c in wanted]


async def resolve(
    user_id: str, p: PackedProfile, products: CodeBook, categories: CodeBook
) -> UserProfile:
    """A packed profile with its product and category codes resolved to names (every reader
    of ``sr:u:<user_id>`` goes through this)."""
    codes = [*p.item_codes.tolist(), *p.view_codes.tolist(), *p.purchase_codes.tolist()]
    names = await products.names(codes)
    n_i, n_v = len(p.item_codes), len(p.view_codes)
    cats = await categories.names(p.category_codes.tolist())
    has_vector = p.model_version != 0 and len(p.vector) > 0
    return UserProfile(
        user_id=user_id,
        items=tuple(names[:n_i]),
        weights=p.item_weights,
        view_history=tuple(names[n_i : n_i + n_v]),
        purchase_history=tuple(names[n_i + n_v :]),
        category_affinity=dict(zip(cats, p.category_weights.tolist(), strict=True)),
        counts=dict(zip(EVENT_TYPES, p.counts.tolist(), strict=True)),
        event_count=p.event_count,
        segment=p.segment,
        vector=p.vector if has_vector else None,
        model_version=p.model_version if has_vector else None,
        first_event_ts=p.first_ts,
        last_event_ts=p.last_ts,
    )


class ProfileReader:
    """Async read access to the derived state, for the recommender.

    ``redis`` must be a ``redis.asyncio.Redis`` created with ``decode_responses=False`` (profiles
    are binary). Every method does one round trip (plus, rarely, one to extend the code book).
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._products = CodeBook(redis, PRODUCT_DICT)
        self._categories = CodeBook(redis, CATEGORY_DICT)

    async def get_profile(self, user_id: str) -> UserProfile | None:
        """The user's profile, or None for a user without applied events."""
        raw = await self._redis.get(profile_key(user_id))
        if raw is None:
            return None
        return await self._resolve(user_id, decode_profile(_binary(raw)))

    async def get_profiles(self, user_ids: Sequence[str]) -> dict[str, UserProfile]:
        """Profiles of many users with one MGET; users without a profile are left out."""
        if not user_ids:
            return {}
        raws = await self._redis.mget([profile_key(u) for u in user_ids])
        out: dict[str, UserProfile] = {}
        for user_id, raw in zip(user_ids, raws, strict=True):
            if raw is not None:
                out[user_id] = await self._resolve(user_id, decode_profile(_binary(raw)))
        return out

    async def get_vector(self, user_id: str) -> tuple[int, NDArray[np.float32]] | None:
        """``(model_version, vector (f,) float32)`` without decoding the rest, or None."""
        raw = await self._redis.get(profile_key(user_id))
        return None if raw is None else decode_vector(_binary(raw))

    async def _resolve(self, user_id: str, p: PackedProfile) -> UserProfile:
        return await resolve(user_id, p, self._products, self._categories)

    async def get_user_attributes(self, user_id: str) -> dict[str, Any] | None:
        """Attributes from ``users.v1`` (``PUT /v1/users/{id}``), or None."""
        raw = await self._redis.get(user_attributes_key(user_id))
        return None if raw is None else decode_user_attributes(raw)[0]

    async def top_trending(
        self,
        k: int,
        category: str | None = None,
        *,
        exclude: AbstractSet[str] | None = None,
    ) -> list[tuple[str, float]]:
        """Top-k ``(product_id, decayed score)`` best first, globally or within ``category``.

        Scores are decayed weights as of the newest counted event time. Products in ``exclude``
        are skipped; when ``exclude`` is None, the current ``sr:unavail`` set is read in the same
        MULTI (pass the set you already poll with ``unavailable_if_changed`` to save that).
        Usually one round trip; another page is fetched only when exclusions ate the first.
        """
        if k <= 0:
            return []
        key = trending_key(category)
        page = 2 * k + 16
        pipe = self._redis.pipeline(transaction=True)
        pipe.hmget(TRENDING_META, ["landmark", "tau", "t"])
        pipe.zrevrange(key, 0, page - 1, withscores=True)
        if exclude is None:
            pipe.smembers(UNAVAILABLE)
        res = await pipe.execute()
        skip = exclude if exclude is not None else {_text(m) for m in res[2]}
        return await self._top(key, k, page, res[1], _trending_scale(res[0]), skip)

    async def top_trending_lists(
        self,
        categories: Sequence[str | None],
        *,
        k_global: int,
        k_category: int,
        exclude: AbstractSet[str],
        exclude_version: int,
    ) -> dict[str | None, list[tuple[str, float]]] | None:
        """``top_trending`` of several lists (None = global, else a category), a round trip per
        ``TRENDING_LISTS_PER_TRIP`` lists (plus a page for a list whose first page ``exclude``
        ate): a reader that also serves requests parses a few lists at a time.

        ``exclude`` is the unavailable set as of ``sr:unavail:ver`` ``exclude_version``; None
        when the version read with the lists differs: a product held since (an undescribed one,
        whose events count at once) would slip through, so read the set again first.
        """
        out: dict[str | None, list[tuple[str, float]]] = {}
        for lo in range(0, len(categories), TRENDING_LISTS_PER_TRIP):
            trip = categories[lo : lo + TRENDING_LISTS_PER_TRIP]
            pipe = self._redis.pipeline(transaction=True)
            pipe.get(UNAVAILABLE_VERSION)
            pipe.hmget(TRENDING_META, ["landmark", "tau", "t"])
            pages: list[int] = []
            for category in trip:
                k = k_global if category is None else k_category
                pages.append(k + min(len(exclude), k) + 16)  # room for the exclusions, usually few
                pipe.zrevrange(trending_key(category), 0, pages[-1] - 1, withscores=True)
            res = await pipe.execute()
            if (int(res[0]) if res[0] is not None else 0) != exclude_version:
                return None
            scale = _trending_scale(res[1])
            for category, page, rows in zip(trip, pages, res[2:], strict=True):
                k = k_global if category is None else k_category
                key = trending_key(category)
                out[category] = await self._top(key, k, page, rows, scale, exclude)
        return out

    async def trending_versions(self) -> dict[str | None, int]:
        """The version of every trending list (None = global), from ``sr:trend:ver``: a list
        whose version did not change since it was read has not changed."""
        raw = await self._redis.hgetall(TRENDING_VERSIONS)
        out: dict[str | None, int] = {}
        for field_, value in raw.items():
            name = _text(field_)
            if name == "g":
                out[None] = int(value)
            elif name.startswith("c:"):
                out[name[2:]] = int(value)
        return out

    async def _top(
        self,
        key: str,
        k: int,
        page: int,
        rows: list[Any],
        scale: float,
        skip: AbstractSet[str],
    ) -> list[tuple[str, float]]:
        """The first ``k`` of ``rows`` (the first page of ``key``) not in ``skip``, paging on."""
        if k <= 0:
            return []
        out: list[tuple[str, float]] = []
        start = 0
        while True:
            for member, score in rows:
                pid = _text(member)
                if pid not in skip:
                    out.append((pid, float(score) * scale))
                    if len(out) == k:
                        return out
            if len(rows) < page:
                return out
            start += page
            rows = await self._redis.zrevrange(key, start, start + page - 1, withscores=True)

    async def trending_categories(self) -> set[str]:
        """Categories that have a trending set."""
        return {_text(m) for m in await self._redis.smembers(TRENDING_CATEGORIES)}

    async def get_products(self, product_ids: Sequence[str]) -> dict[str, CatalogState]:
        """Catalog state of the given products (one HMGET); unknown products are left out."""
        if not product_ids:
            return {}
        raws = await self._redis.hmget(CATALOG, list(product_ids))
        return {
            pid: decode_catalog_state(raw)
            for pid, raw in zip(product_ids, raws, strict=True)
            if raw is not None
        }

    async def unavailable_version(self) -> int:
        """The ``sr:unavail:ver`` counter (0 before any catalog update)."""
        raw = await self._redis.get(UNAVAILABLE_VERSION)
        return int(raw) if raw is not None else 0

    async def unavailable_products(self) -> tuple[int, frozenset[str]]:
        """``(version, ids of inactive or out-of-stock products)``, read atomically."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.get(UNAVAILABLE_VERSION)
        pipe.smembers(UNAVAILABLE)
        ver, members = await pipe.execute()
        return (int(ver) if ver is not None else 0), frozenset(_text(m) for m in members)

    async def unavailable_if_changed(self, known_version: int) -> tuple[int, frozenset[str]] | None:
        """Poll cheaply: None while the version equals ``known_version`` (one GET)."""
        if await self.unavailable_version() == known_version:
            return None
        return await self.unavailable_products()
