"""Redis I/O of the processor: one ``redis.asyncio`` client and the Lua scripts.

Every write is a Lua script, so each user's profile update (with its trending increments and
the deletion of the user's recommendation cache) and each catalog / user-attribute update is
atomic. Key layout and codecs: ``streamrec_shared.profile``.

Every script first checks that Redis still holds the state this process knows
(``sr:epoch`` ``id`` equals the store's ``epoch``, passed as the last argument): a Redis that
restarted empty refuses the write with ``StateLost`` instead of taking profiles built from
product codes it no longer has (``streamrec_stream_processor.epoch`` rebuilds it).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError, ResponseError

from streamrec_shared import feedback
from streamrec_shared.profile import (
    CATALOG,
    CATALOG_CHANNEL,
    CATEGORY_DICT,
    CATEGORY_DICT_INDEX,
    EPOCH,
    PREFIX,
    PRODUCT_DICT,
    PRODUCT_DICT_INDEX,
    RENORMALISE_AT,
    TRENDING_CATEGORIES,
    TRENDING_GLOBAL,
    TRENDING_HELD,
    TRENDING_META,
    TRENDING_VERSIONS,
    UNAVAILABLE,
    UNAVAILABLE_VERSION,
    profile_key,
    rec_cache_key,
    trending_tau,
    user_attributes_key,
)
from streamrec_shared.recent_events import recent_events_key
from streamrec_shared.settings import RedisSettings

logger = logging.getLogger(__name__)

CATEGORY_TREND_PREFIX = f"{PREFIX}trend:c:"

EVENT_IDS_PREFIX = f"{PREFIX}ids:"


EVENT_IDS_NEWEST = f"{PREFIX}ids-newest"
"""ZSET user id -> the newest receive time in the user's ``event_ids_key``: which users' sets
the profile script may drop as stale (no TTL: state, like the sets it indexes)."""

STALE_SWEEP = 100
"""Stale event-id sets dropped per profile-script call at most (``PROFILE_CHUNK`` users per
call add at most as many to ``EVENT_IDS_NEWEST``, so the sweep keeps up)."""


def event_ids_key(user_id: str) -> str:
    """ZSET of the digests (decimal) of a user's applied event ids, scored by receive time.

    Bounded at every write by the profile script: the ids of the last ``event_id_window_s``
    before the user's newest, at most ``event_id_max`` of them (the newest). A user who stops
    sending leaves no set behind: once the processor applies an event received more than two
    windows after the user's newest, a later profile-script call deletes the user's set (the
    second window spares a user whose partition lags the others by up to a window). No TTL
    (under ``volatile-lru`` a TTL would make it evictable); deleted with the user's erasure,
    rebuilt with the profiles when Redis loses its state."""
    return EVENT_IDS_PREFIX + user_id


# Which event ids users have applied, for many users in one call (a read: no epoch). ARGV: n,
# then n x (user id, k, k digests). Returns 1 (in the user's ``event_ids_key``) or 0 per digest.
KNOWN_IDS = """
local n, j, out = tonumber(ARGV[1]), 2, {}
for _ = 1, n do
  local key, k = '$IDS' .. ARGV[j], tonumber(ARGV[j + 1])
  for d = j + 2, j + 1 + k do
    out[#out + 1] = redis.call('ZSCORE', key, ARGV[d]) and 1 or 0
  end
  j = j + 2 + k
end
return out
""".replace("$IDS", EVENT_IDS_PREFIX)

# Many users per call (one round trip, one reply). ARGV: n, then n x (user id, expected prefix
# ("" = absent), new value, trending JSON ``[[product id, category or "", weight, event ts],
# ...]`` or "", event ids JSON ``[[digest as a string, received_at], ...]`` or ""). Per user,
# atomically with the whole call: compare the stored prefix, SET the profile, DEL the
# recommendation cache, add the trending increments, add the applied event ids to the user's
# ``event_ids_key`` and drop those older than the window or beyond the newest ``event_id_max``
# (then, once per call, drop up to ``STALE_SWEEP`` sets of users whose newest id is more than
# two windows older than the newest of any user). An increment without a category (the
# product was not described when the batch read the catalog) takes the category ``sr:catalog``
# holds now: a description that arrived meanwhile copied the product's global score into its
# category (``APPLY_CATALOG``), so the increment must go there too; a product ``sr:catalog``
# still does not describe counts in ``sr:trend:held`` instead of the global list (readers page
# past unavailable products: ten thousand undescribed ids there cost every recommender worker a
# scan of them per poll). Every list changed gets its ``sr:trend:ver`` field bumped once per
# call. Returns one 1 (applied)
# or 0 (stored prefix differs: someone else wrote, re-read) per user. The key prefixes, trending
# key names, tau and the renormalisation limit are formatted in (``apply_profile_script``);
# keys are computed here, so this needs a single Redis (not Redis Cluster).
APPLY_PROFILES = """
local global, meta, cats, catprefix = '$GLOBAL', '$META', '$CATS', '$CATPREFIX'
local catalog, versions, held = '$CATALOG', '$VERSIONS', '$HELD'
local limit = $LIMIT
local landmark, tau, newest
local loaded = false
local touched, described = {}, {}
local function fmt(x) return string.format('%.17g', x) end
local function category_of(pid)
  local c = described[pid]
  if c == nil then
    c = false
    local raw = redis.call('HGET', catalog, pid)
    if raw then
      c = ''
      local ok, doc = pcall(cjson.decode, raw)
      if ok and type(doc['c']) == 'string' then c = doc['c'] end
    end
    described[pid] = c
  end
  return c
end
local function rescale(key, factor)
  local all = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  for j = 1, #all, 2 do
    local s = tonumber(all[j + 1]) * factor
    if s < 1e-9 then
      redis.call('ZREM', key, all[j])
    else
      redis.call('ZADD', key, fmt(s), all[j])
    end
  end
end
local function trend(incs)
  if not loaded then
    local m = redis.call('HMGET', meta, 'landmark', 'tau', 't')
    landmark, tau, newest = tonumber(m[1]), tonumber(m[2]), tonumber(m[3])
    if not tau then tau = $TAU end
    loaded = true
  end
  for _, inc in ipairs(incs) do
    local pid, cat, w, t = inc[1], inc[2], inc[3], inc[4]
    if not landmark then
      landmark = t
      redis.call('HSET', meta, 'landmark', fmt(landmark), 'tau', fmt(tau), 'renorms', 0)
    end
    if (t - landmark) / tau > limit then
      local factor = math.exp((landmark - t) / tau)
      rescale(global, factor)
      rescale(held, factor)
      touched['g'] = true
      for _, c in ipairs(redis.call('SMEMBERS', cats)) do
        rescale(catprefix .. c, factor)
        touched['c:' .. c] = true
      end
      landmark = t
      redis.call('HSET', meta, 'landmark', fmt(landmark))
      redis.call('HINCRBY', meta, 'renorms', 1)
    end
    local score = fmt(w * math.exp((t - landmark) / tau))
    if cat == '' then cat = category_of(pid) end
    if not cat then
      redis.call('ZINCRBY', held, score, pid)
    else
      redis.call('ZINCRBY', global, score, pid)
      touched['g'] = true
      if cat ~= '' then
        redis.call('ZINCRBY', catprefix .. cat, score, pid)
        redis.call('SADD', cats, cat)
        touched['c:' .. cat] = true
      end
    end
    if not newest or t > newest then newest = t end
  end
end
local n = tonumber(ARGV[1])
local out = {}
local indexed = false
for i = 0, n - 1 do
  local j = 2 + 5 * i
  local uid, expected, value, incs, ids = ARGV[j], ARGV[j + 1], ARGV[j + 2], ARGV[j + 3],
    ARGV[j + 4]
  local key = '$PROFILE' .. uid
  local cur = redis.call('GET', key)
  local ok
  if cur then ok = string.sub(cur, 1, 5) == expected else ok = expected == '' end
  if ok then
    redis.call('SET', key, value)
    redis.call('DEL', '$RECCACHE' .. uid)
    if incs ~= '' then trend(cjson.decode(incs)) end
    if ids ~= '' then
      local idkey, latest = '$IDS' .. uid, nil
      for _, d in ipairs(cjson.decode(ids)) do
        redis.call('ZADD', idkey, fmt(d[2]), d[1])
        if not latest or d[2] > latest then latest = d[2] end
      end
      redis.call('ZREMRANGEBYSCORE', idkey, '-inf', '(' .. fmt(latest - $WINDOW))
      redis.call('ZREMRANGEBYRANK', idkey, 0, -($MAXIDS + 1))
      redis.call('ZADD', '$NEWEST', 'GT', fmt(latest), uid)
      indexed = true
    end
    out[i + 1] = 1
  else
    out[i + 1] = 0
  end
end
if indexed then
  local top = redis.call('ZREVRANGE', '$NEWEST', 0, 0, 'WITHSCORES')
  local stale = redis.call('ZRANGEBYSCORE', '$NEWEST', '-inf',
    '(' .. fmt(tonumber(top[2]) - 2 * $WINDOW), 'LIMIT', 0, $SWEEP)
  for _, u in ipairs(stale) do redis.call('UNLINK', '$IDS' .. u) end
  if #stale > 0 then redis.call('ZREM', '$NEWEST', unpack(stale)) end
end
if newest then redis.call('HSET', meta, 't', fmt(newest)) end
for f in pairs(touched) do redis.call('HINCRBY', versions, f, 1) end
return out
"""


def apply_profile_script(tau_s: float, event_id_window_s: float, event_id_max: int) -> str:
    """``APPLY_PROFILES`` with key prefixes, ``tau_s``, the event-id window and cap and the
    limits filled in."""
    return (
        APPLY_PROFILES.replace("$GLOBAL", TRENDING_GLOBAL)
        .replace("$HELD", TRENDING_HELD)
        .replace("$IDS", EVENT_IDS_PREFIX)
        .replace("$NEWEST", EVENT_IDS_NEWEST)
        .replace("$WINDOW", repr(float(event_id_window_s)))
        .replace("$MAXIDS", str(int(event_id_max)))
        .replace("$SWEEP", str(STALE_SWEEP))
        .replace("$PROFILE", profile_key(""))
        .replace("$RECCACHE", rec_cache_key(""))
        .replace("$META", TRENDING_META)
        .replace("$CATS", TRENDING_CATEGORIES)
        .replace("$CATPREFIX", CATEGORY_TREND_PREFIX)
        .replace("$CATALOG", CATALOG)
        .replace("$VERSIONS", TRENDING_VERSIONS)
        .replace("$TAU", repr(float(tau_s)))
        .replace("$LIMIT", repr(float(RENORMALISE_AT)))
    )


# Many records per call, in order. KEYS: catalog hash, unavailable set, unavailable version.
# ARGV: channel, n, then n x (product id, JSON state, updated_at, available "1"/"0",
# tombstone "1"/"0"; a tombstone only marks the product inactive). A state older than the stored
# one (``t``) is skipped. The first description of a product moves its score from
# ``sr:trend:held`` into the global list and copies its global score into its category's list:
# the events counted before it (they overtook the catalog record) could not name the category.
# Returns how many records were applied.
APPLY_CATALOG = (
    """
local channel, n = ARGV[1], tonumber(ARGV[2])
local global, cats, catprefix, versions = '$GLOBAL', '$CATS', '$CATPREFIX', '$VERSIONS'
local held = '$HELD'
local function first_description(pid, value)
  local kept = redis.call('ZSCORE', held, pid)
  if kept then
    redis.call('ZREM', held, pid)
    redis.call('ZINCRBY', global, kept, pid)
    redis.call('HINCRBY', versions, 'g', 1)
  end
  local ok, doc = pcall(cjson.decode, value)
  if not ok or type(doc['c']) ~= 'string' or doc['c'] == '' then return end
  local score = redis.call('ZSCORE', global, pid)
  if score then
    redis.call('ZADD', catprefix .. doc['c'], score, pid)
    redis.call('SADD', cats, doc['c'])
    redis.call('HINCRBY', versions, 'c:' .. doc['c'], 1)
  end
end
local applied = 0
for i = 0, n - 1 do
  local j = 3 + 5 * i
  local pid, value, t, available, tombstone = ARGV[j], ARGV[j + 1], ARGV[j + 2], ARGV[j + 3],
    ARGV[j + 4]
  local old = redis.call('HGET', KEYS[1], pid)
  local stale = false
  if tombstone == '1' then
    if old then
      local ok, doc = pcall(cjson.decode, old)
      if ok then
        doc['a'] = 0
        redis.call('HSET', KEYS[1], pid, cjson.encode(doc))
      end
    end
  else
    if old then
      local ok, doc = pcall(cjson.decode, old)
      if ok and doc['t'] and tonumber(doc['t']) > tonumber(t) then stale = true end
    end
    if not stale then
      redis.call('HSET', KEYS[1], pid, value)
      if not old then first_description(pid, value) end
    end
  end
  if not stale then
    local changed
    if available == '1' then
      changed = redis.call('SREM', KEYS[2], pid)
    else
      changed = redis.call('SADD', KEYS[2], pid)
    end
    if changed == 1 then
      redis.call('INCR', KEYS[3])
      redis.call('PUBLISH', channel, pid)
    end
    applied = applied + 1
  end
end
return applied
""".replace("$GLOBAL", TRENDING_GLOBAL)
    .replace("$HELD", TRENDING_HELD)
    .replace("$CATS", TRENDING_CATEGORIES)
    .replace("$CATPREFIX", CATEGORY_TREND_PREFIX)
    .replace("$VERSIONS", TRENDING_VERSIONS)
)

# Products events name that the catalog has not described (no state in KEYS[1], sr:catalog) join
# the unavailable set KEYS[2], so no answer shows them; the first catalog record of the product
# (APPLY_CATALOG) takes an available one out again. Bumps the version KEYS[3] and publishes each
# product added on ARGV[1]. ARGV: channel, then product ids (then the epoch, see GUARD). Returns
# how many were added.
HOLD_UNDESCRIBED = """
local added = 0
for i = 2, #ARGV - 1 do
  local pid = ARGV[i]
  if redis.call('HEXISTS', KEYS[1], pid) == 0 and redis.call('SADD', KEYS[2], pid) == 1 then
    added = added + 1
    redis.call('PUBLISH', ARGV[1], pid)
  end
end
if added > 0 then redis.call('INCR', KEYS[3]) end
return added
"""

# Many records per call, in order. ARGV: n, then n x (user id, JSON value, updated_at); the key
# is ``sr:ua:<user id>``. A value older than the stored one (``t``) is skipped. Returns how many
# were applied.
APPLY_USERS = """
local n, applied = tonumber(ARGV[1]), 0
for i = 0, n - 1 do
  local j = 2 + 3 * i
  local key = '$USERATTRS' .. ARGV[j]
  local old = redis.call('GET', key)
  local stale = false
  if old then
    local ok, doc = pcall(cjson.decode, old)
    if ok and doc['t'] and tonumber(doc['t']) > tonumber(ARGV[j + 2]) then stale = true end
  end
  if not stale then
    redis.call('SET', key, ARGV[j + 1])
    applied = applied + 1
  end
end
return applied
""".replace("$USERATTRS", user_attributes_key(""))

# KEYS: code list, index hash. ARGV: names (then the epoch, see GUARD). Returns their codes
# (new names get the next codes).
INTERN = """
local out = {}
for i = 1, #ARGV - 1 do
  local name = ARGV[i]
  local c = redis.call('HGET', KEYS[2], name)
  if not c then
    c = redis.call('RPUSH', KEYS[1], name) - 1
    redis.call('HSET', KEYS[2], name, c)
  end
  out[i] = tonumber(c)
end
return out
"""

GUARD = f"""
if redis.call('HGET', '{EPOCH}', 'id') ~= ARGV[#ARGV] then
  return redis.error_reply('STATE_LOST Redis no longer holds the state this writer knows')
end
"""
"""Prepended to every write script: the last argument is the writer's epoch id."""


class StateLost(Exception):
    """Redis's ``sr:epoch`` is not the one this store knows: it lost its state (a restart
    without data, a flush); nothing of the write was applied."""


INTERN_CHUNK = 2000
PROFILE_CHUNK = 100
CATALOG_CHUNK = 200
"""Users per profile-script call: keeps each call well under a millisecond inside Redis."""

ScriptArg = str | bytes | int | float
W = TypeVar("W")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TrendIncrement:
    """One positive-weight event for the trending sets."""

    product_id: str
    category: str | None
    weight: float
    ts: float


@dataclass(frozen=True, slots=True)
class ProfileWrite:
    """A compare-and-set of one user's profile: ``expected`` prefix (b"" = absent), new value."""

    user_id: str
    expected: bytes
    value: bytes
    trending: tuple[TrendIncrement, ...]
    event_ids: tuple[tuple[int, float], ...] = ()
    """(event-id digest, received_at) of the events the new value applied."""


@dataclass(frozen=True, slots=True)
class CatalogWrite:
    product_id: str
    value: bytes
    updated_at: float
    available: bool
    tombstone: bool = False


class RedisStore:
    """The processor's Redis client and its scripts."""

    def __init__(
        self,
        settings: RedisSettings,
        *,
        timeout_s: float,
        trending_half_life_s: float,
        event_id_window_s: float = 2 * 86_400.0,
        event_id_max: int = 1000,
    ) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        self._profile_script = apply_profile_script(
            trending_tau(trending_half_life_s), event_id_window_s, event_id_max
        )
        self._redis: Redis | None = None
        self._codes: dict[str, dict[str, int]] = {PRODUCT_DICT: {}, CATEGORY_DICT: {}}
        self._scripts: dict[str, AsyncScript] = {}
        self.epoch = ""
        """The ``sr:epoch`` id this store's caches belong to ("" until the first check)."""

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            raise RuntimeError("RedisStore is not started")
        return self._redis

    async def start(self) -> None:
        self._redis = Redis.from_url(
            self._settings.url.get_secret_value(),
            socket_timeout=self._timeout_s,
            socket_connect_timeout=max(self._settings.connect_timeout_s, 1.0),
            decode_responses=False,
            health_check_interval=30,
        )
        for name, text in (
            ("profile", self._profile_script),
            ("catalog", APPLY_CATALOG),
            ("undescribed", HOLD_UNDESCRIBED),
            ("user", APPLY_USERS),
            ("intern", INTERN),
        ):
            self._scripts[name] = self._redis.register_script(GUARD + text)
        self._scripts["known"] = self._redis.register_script(KNOWN_IDS)
        try:
            await self.adopt_epoch()
        except (RedisError, OSError) as exc:  # the consumer's guard adopts it once Redis is back
            logger.warning("Redis unavailable at start (%s); writes wait for it", exc)

    async def adopt_epoch(self) -> tuple[str, set[str]]:
        """Redis's epoch id (created if Redis has none: new, or lost its state) and the
        partitions replayed into it (``p:<topic>:<partition>`` fields); a different id than
        the one known resets this store's caches (``reset``)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hsetnx(EPOCH, "id", uuid.uuid4().hex)
        pipe.hgetall(EPOCH)
        _, fields = await pipe.execute()
        names = {k.decode(): v.decode() for k, v in fields.items()}
        current = names.pop("id")
        if current != self.epoch:
            if self.epoch:
                logger.warning("Redis lost its state (epoch %s -> %s)", self.epoch, current)
            self.reset(current)
        return current, set(names)

    def reset(self, epoch: str) -> None:
        """Redis's state is ``epoch`` now: forget the codes cached from an earlier one."""
        self.epoch = epoch
        self._codes = {PRODUCT_DICT: {}, CATEGORY_DICT: {}}

    async def stop(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (RedisError, OSError, RuntimeError) as exc:
            logger.debug("redis ping failed: %s", exc)
            return False

    # --- reads --------------------------------------------------------------------------------
    async def read(
        self,
        user_ids: Sequence[str],
        product_ids: Sequence[str],
        digests: Sequence[Sequence[int]] = (),
    ) -> tuple[list[bytes | None], list[bytes | None], list[set[int]]]:
        """Stored profiles of ``user_ids``, catalog states of ``product_ids`` and, per user,
        which of ``digests`` (event-id digests, one list per user) are in the user's
        ``event_ids_key`` (one trip)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.mget([profile_key(u) for u in user_ids])
        if product_ids:
            pipe.hmget(CATALOG, list(product_ids))
        asked = [(i, list(d)) for i, d in enumerate(digests) if d]
        if asked:
            args: list[ScriptArg] = [len(asked)]
            for i, ds in asked:
                args += [user_ids[i], len(ds), *(str(d) for d in ds)]
            await self._scripts["known"](keys=[], args=args, client=pipe)
        res = await pipe.execute()
        catalog: list[bytes | None] = res[1] if product_ids else []
        profiles: list[bytes | None] = res[0]
        known: list[set[int]] = [set() for _ in user_ids]
        if asked:
            flags = iter(res[-1])
            for i, ds in asked:
                known[i] = {d for d in ds if next(flags)}
        return profiles, catalog, known

    # --- interning ----------------------------------------------------------------------------
    def cached_code(self, kind: str, name: str) -> int | None:
        return self._codes[kind].get(name)

    async def intern(self, kind: str, names: Iterable[str]) -> dict[str, int]:
        """Codes of ``names`` in dictionary ``kind`` (``PRODUCT_DICT`` or ``CATEGORY_DICT``)."""
        cache = self._codes[kind]
        out: dict[str, int] = {}
        missing: list[str] = []
        for name in names:
            code = cache.get(name)
            if code is None:
                missing.append(name)
            else:
                out[name] = code
        missing = list(dict.fromkeys(missing))
        index = PRODUCT_DICT_INDEX if kind == PRODUCT_DICT else CATEGORY_DICT_INDEX
        for start in range(0, len(missing), INTERN_CHUNK):
            chunk = missing[start : start + INTERN_CHUNK]
            codes = await self._guarded(
                self._scripts["intern"](keys=[kind, index], args=[*chunk, self.epoch])
            )
            for name, code in zip(chunk, codes, strict=True):
                cache[name] = out[name] = int(code)
        return out

    # --- writes -------------------------------------------------------------------------------
    async def _apply_in_chunks(
        self,
        script: str,
        writes: Sequence[W],
        size: int,
        encode: Callable[[W], Iterable[ScriptArg]],
        *,
        keys: Sequence[str] = (),
        head: Sequence[ScriptArg] = (),
    ) -> list[Any]:
        """Run ``script`` over ``writes``, ``size`` per call (bounded time inside Redis), every
        call in one pipeline round trip; a call's arguments are ``head``, the chunk's length and
        each write's ``encode``. When Redis has lost the script (a restart, SCRIPT FLUSH) it is
        loaded again and the calls sent again (the scripts are idempotent). One reply per call."""
        calls: list[list[ScriptArg]] = []
        for lo in range(0, len(writes), size):
            chunk = writes[lo : lo + size]
            args: list[ScriptArg] = [*head, len(chunk)]
            for w in chunk:
                args.extend(encode(w))
            args.append(self.epoch)
            calls.append(args)
        registered = self._scripts[script]
        while True:
            pipe = self.redis.pipeline(transaction=False)
            for args in calls:
                pipe.evalsha(registered.sha, len(keys), *keys, *args)
            try:
                return list(await self._guarded(pipe.execute()))
            except NoScriptError:
                await self.redis.script_load(registered.script)

    @staticmethod
    async def _guarded(call: Awaitable[T]) -> T:
        """``call``, with a script's epoch refusal raised as ``StateLost``."""
        try:
            return await call
        except ResponseError as exc:
            if "STATE_LOST" in str(exc):
                raise StateLost(str(exc)) from exc
            raise

    async def write_profiles(self, writes: Sequence[ProfileWrite]) -> list[bool]:
        """Compare-and-set each profile with its trending increments; True where applied.

        ``PROFILE_CHUNK`` users per script call.
        """
        if not writes:
            return []

        def encode(w: ProfileWrite) -> tuple[ScriptArg, ...]:
            trending = (
                json.dumps(
                    [[t.product_id, t.category or "", t.weight, t.ts] for t in w.trending],
                    separators=(",", ":"),
                )
                if w.trending
                else ""
            )
            ids = (
                json.dumps([[str(d), r] for d, r in w.event_ids], separators=(",", ":"))
                if w.event_ids
                else ""
            )
            return (w.user_id, w.expected, w.value, trending, ids)

        res = await self._apply_in_chunks("profile", writes, PROFILE_CHUNK, encode)
        return [int(r) == 1 for chunk in res for r in chunk]

    async def write_catalog(self, writes: Sequence[CatalogWrite]) -> int:
        """Apply catalog states in order; returns how many were newer than the stored ones.

        ``CATALOG_CHUNK`` records per script call.
        """
        if not writes:
            return 0

        def encode(w: CatalogWrite) -> tuple[ScriptArg, ...]:
            flags = ("1" if w.available else "0", "1" if w.tombstone else "0")
            return (w.product_id, w.value, repr(w.updated_at), *flags)

        res = await self._apply_in_chunks(
            "catalog",
            writes,
            CATALOG_CHUNK,
            encode,
            keys=[CATALOG, UNAVAILABLE, UNAVAILABLE_VERSION],
            head=[CATALOG_CHANNEL],
        )
        return sum(int(r) for r in res)

    async def hold_undescribed(self, product_ids: Sequence[str]) -> int:
        """Keep products the catalog has not described out of every answer (they join the
        unavailable set until their first catalog record); how many were added."""
        if not product_ids:
            return 0
        script = self._scripts["undescribed"]
        added = await self._guarded(
            script(
                keys=[CATALOG, UNAVAILABLE, UNAVAILABLE_VERSION],
                args=[CATALOG_CHANNEL, *product_ids, self.epoch],
            )
        )
        return int(added)

    async def erase_users(self, user_ids: Sequence[str]) -> None:
        """Forget users (``DELETE /v1/users/{id}`` -> ``UserErased``): their profile, event ids,
        attributes, cached answers, recent events (ingest's read-your-writes list) and the
        record of which response showed them which product."""
        if not user_ids:
            return
        keys = [
            key
            for user_id in user_ids
            for key in (
                profile_key(user_id),
                event_ids_key(user_id),
                user_attributes_key(user_id),
                rec_cache_key(user_id),
                recent_events_key(user_id),
                feedback.shown_key(user_id),
            )
        ]
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(*keys)
        pipe.zrem(EVENT_IDS_NEWEST, *user_ids)
        await pipe.execute()

    async def write_users(self, writes: Sequence[tuple[str, bytes, float]]) -> int:
        """Apply ``(user_id, attributes JSON, updated_at)``; returns how many were newer."""
        if not writes:
            return 0
        res = await self._apply_in_chunks(
            "user", writes, CATALOG_CHUNK, lambda w: (w[0], w[1], repr(w[2]))
        )
        return sum(int(r) for r in res)
