"""Impressions out: which response showed which product, and the online counters' reading side.

Each pod buffers its impressions and flushes them every ``online_flush_s`` in one pipeline
(``imp`` counter increments, plus per user which rec id showed which product: HASH
``sr:rs:<user>`` product -> rec id, expiring after the attribution window), together with
the result-cache writes of its answers. Clicks and conversions are counted by the stream
processor (``streamrec_stream_processor.attribution``), which reads ``sr:rs:`` to attribute a
purchase without rec id. Counter layout: ``streamrec_shared.feedback``; every pod reads the
same counters for the bandit and ``/v1/metrics/online``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Iterator
from itertools import chain
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from streamrec_recommender import online
from streamrec_recommender.online import RecTag
from streamrec_recommender.serving.policy import ArmStats
from streamrec_shared import metrics, profile
from streamrec_shared.feedback import shown_key

logger = logging.getLogger(__name__)


_RECORD_LUA = """
local shown_ttl, cache_ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local i = 4
for _ = 1, tonumber(ARGV[3]) do
  local key, n = ARGV[i], tonumber(ARGV[i + 1])
  redis.call('HSET', key, unpack(ARGV, i + 2, i + 1 + 2 * n))
  redis.call('EXPIRE', key, shown_ttl)
  i = i + 2 + 2 * n
end
local n_cache = tonumber(ARGV[i])
i = i + 1
for _ = 1, n_cache do
  -- only if the profile is still the one the answer was computed from
  if redis.call('GETRANGE', ARGV[i + 3], 0, 4) == ARGV[i + 4] then
    redis.call('HSET', ARGV[i], ARGV[i + 1], ARGV[i + 2])
    redis.call('EXPIRE', ARGV[i], cache_ttl)
  end
  i = i + 5
end
return 1
"""
"""Part of a flush of impressions: per user the shown products (-> rec id, one HSET of
``n >= 1`` pairs), then result-cache fields (each written only while the user's profile still
has the revision it was computed from)."""

RECORD_ARGS = 1024
"""Arguments per ``_RECORD_LUA`` call. A flush is sent as several such calls, one after the
other: a script holds Redis (every request's read waits behind it) and building and packing
its arguments holds the event loop. One worker at 500 req/s flushes ~250 responses (~6,750
arguments) every 0.5 s; as one script that held Redis 2-3 ms and the loop 3 ms (up to 8 ms
seen) at a time, in parts of this size each holds Redis ~0.3 ms and the loop ~0.5 ms."""
MAX_PAIRS = 1000
"""Product -> rec id pairs per HSET (Lua's ``unpack`` is limited to a few thousand values)."""


class OnlineRecorder:
    """Buffers impressions and result-cache writes; flushes them to Redis in one pipeline."""

    def __init__(self, redis: Redis, *, window_s: int, retention_s: int, cache_ttl_s: int) -> None:
        self.redis = redis
        self.window_s = window_s
        self.retention_s = retention_s
        self.cache_ttl_s = cache_ttl_s
        self._counts: Counter[tuple[int, str]] = Counter()
        self._shown: dict[str, dict[str, str]] = {}
        self._cache: dict[tuple[str, str], tuple[bytes, bytes]] = {}
        self.max_pending = 50_000
        self._record_sha = hashlib.sha1(_RECORD_LUA.encode()).hexdigest()  # noqa: S324 - script id
        self._record_loaded = False

    def impression(self, user_id: str, rec_id: str, tag: RecTag, product_ids: list[str]) -> None:
        fld = online.field("imp", tag.algorithm, tag.segment, tag.experiment, tag.variant)
        self._counts[(tag.minute, fld)] += 1
        metrics.RECOMMENDER_ONLINE_EVENTS.labels(
            tag.algorithm, tag.variant or "-", "impression"
        ).inc()
        if product_ids and len(self._shown) < self.max_pending:
            shown = self._shown.setdefault(user_id, {})
            for pid in product_ids:
                shown[pid] = rec_id

    def cache(self, user_id: str, cache_field: str, value: bytes, revision: bytes) -> None:
        """Buffer a result-cache write, valid only while the profile is still at ``revision``
        (its stored prefix): a write that lands after the stream processor applied a newer
        event (and deleted the cache) is skipped instead of resurrecting a stale answer."""
        if len(self._cache) < self.max_pending:
            self._cache[(user_id, cache_field)] = (value, revision)

    async def flush(self) -> None:
        """Write everything buffered; on failure the rest is dropped (counted as degraded)."""
        counts, shown, cache = self._counts, self._shown, self._cache
        if not counts and not shown and not cache:
            return
        self._counts, self._shown, self._cache = Counter(), {}, {}
        try:
            if counts:
                pipe = self.redis.pipeline(transaction=False)
                minutes: set[int] = set()
                for (minute, fld), n in counts.items():
                    pipe.hincrby(online.bucket_key(minute), fld, n)
                    minutes.add(minute)
                for minute in minutes:
                    pipe.expire(online.bucket_key(minute), self.retention_s)
                await pipe.execute()
            if not self._record_loaded:
                await self.redis.script_load(_RECORD_LUA)
                self._record_loaded = True
            # The next part's arguments are built only once the previous part was written, so
            # requests run (and Redis answers their reads) between the parts.
            for args in self._record_parts(shown, cache):
                await self.redis.evalsha(self._record_sha, 0, *args)
        except (RedisError, OSError, TimeoutError) as exc:
            self._record_loaded = False  # a restarted Redis has lost the script
            metrics.RECOMMENDER_DEGRADED.labels("redis").inc()
            logger.warning("dropping online counter updates of %d responses: %s", len(shown), exc)

    def _record_parts(
        self, shown: dict[str, dict[str, str]], cache: dict[tuple[str, str], tuple[bytes, bytes]]
    ) -> Iterator[list[Any]]:
        """Arguments of the ``_RECORD_LUA`` calls that write ``shown`` and ``cache``, each
        about ``RECORD_ARGS`` long."""
        groups: list[Any] = []  # per HSET: key, n, n pairs
        n_groups = 0
        writes: list[Any] = []  # per cache write: 5 values

        def call() -> list[Any]:
            return [self.window_s, self.cache_ttl_s, n_groups, *groups, len(writes) // 5, *writes]

        for user_id, mapping in shown.items():
            pairs = list(chain.from_iterable(mapping.items()))
            for start in range(0, len(pairs), 2 * MAX_PAIRS):
                part = pairs[start : start + 2 * MAX_PAIRS]
                groups += [shown_key(user_id), len(part) // 2, *part]
                n_groups += 1
                if len(groups) >= RECORD_ARGS:
                    yield call()
                    groups, n_groups = [], 0
        for (user_id, cache_field), (value, revision) in cache.items():
            writes += [
                profile.rec_cache_key(user_id),
                cache_field,
                value,
                profile.profile_key(user_id),
                revision,
            ]
            if len(groups) + len(writes) >= RECORD_ARGS:
                yield call()
                groups, n_groups, writes = [], 0, []
        if groups or writes:
            yield call()

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.flush()
            except Exception:  # loop boundary
                logger.exception("online flush failed")

    # --- reading ---------------------------------------------------------------------------
    async def window_counts(
        self, window_s: int, *, now: float | None = None
    ) -> list[tuple[str, int]]:
        """(field, count) summed over the minute buckets of the last ``window_s`` seconds."""
        now = time.time() if now is None else now
        last = int(now // online.BUCKET_S)
        first = int((now - window_s) // online.BUCKET_S) + 1
        pipe = self.redis.pipeline(transaction=False)
        for minute in range(first, last + 1):
            pipe.hgetall(online.bucket_key(minute))
        totals: Counter[str] = Counter()
        for bucket in await pipe.execute():
            for k, v in bucket.items():
                totals[k.decode() if isinstance(k, bytes) else k] += int(v)
        return list(totals.items())

    async def arm_stats(self, window_s: int) -> dict[str, dict[str, ArmStats]]:
        return online.arm_stats(await self.window_counts(window_s))
