"""Redis access for serving: the user read, catalog mirror, trending mirror, circuit breaker.

Reads go through ``streamrec_shared.profile`` (key names, codecs, ``ProfileReader``); the
layout is the stream processor's. Per request there is one round trip on the request path's
own lean connection (``resp.RespConnection``): the result-cache field (``sr:rc:<user>``), the
packed profile (``sr:u:<user>``) and the user's attributes (``sr:ua:<user>``). Everything
else the request needs is mirrored in memory by background loops: the unavailable-product set
(``sr:unavail``, polled by version every ``catalog_refresh_s``), product categories
(``sr:catalog``, scanned in chunks) and trending lists (``sr:trend:*``).

Redis failures never reach the client: they raise ``RedisUnavailableError`` for the caller to
degrade, and a ``CircuitBreaker`` skips Redis entirely for a while after repeated failures, so
a dead Redis costs one fast check per request instead of a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from redis.asyncio import Connection, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.connection import HiredisRespSerializer
from redis.exceptions import RedisError
from redis.typing import EncodableT

from streamrec_recommender.adapters.breaker import CircuitBreaker
from streamrec_recommender.serving.context import TrendingMirror
from streamrec_shared import metrics, profile, recent_events
from streamrec_shared.resp import RespConnection
from streamrec_shared.settings import RedisSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")

TRENDING_GLOBAL_K = 500
TRENDING_CATEGORY_K = 200
"""Products mirrored per trending list (a request asks for at most 100: ``api.routes.K``)."""


class RedisUnavailableError(Exception):
    """Redis failed or the breaker is open; the caller serves a degraded answer."""


_PACKER = HiredisRespSerializer()


class HiredisPackingConnection(Connection):
    """A connection that packs commands with hiredis (C), as redis-py's sync client does.

    The asyncio client packs every argument in Python; on the request path (a pipeline per
    request, impression flushes with thousands of arguments) that was the largest share of the
    Redis client's CPU.
    """

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        packed: list[bytes] = _PACKER.pack(*args)  # type: ignore[arg-type]  # stub: *args: List
        return packed


def connect(
    settings: RedisSettings, *, max_connections: int = 64, timeout_s: float | None = None
) -> Redis:
    """A binary (decode_responses=False) client with no retries; timeouts from settings (short,
    for requests) unless ``timeout_s`` is given (background work)."""
    return Redis.from_url(
        settings.url.get_secret_value(),
        socket_timeout=timeout_s or settings.socket_timeout_s,
        socket_connect_timeout=timeout_s or settings.connect_timeout_s,
        decode_responses=False,
        retry=Retry(NoBackoff(), 0),
        max_connections=max_connections,
        health_check_interval=0,
        connection_class=HiredisPackingConnection,
    )


def category_of(raw: bytes | str) -> str | None:
    """The ``c`` field of a ``sr:catalog`` value without a full JSON parse when it is plain."""
    data = raw if isinstance(raw, bytes) else raw.encode()
    start = data.find(b'"c":"')
    if start >= 0:
        end = data.find(b'"', start + 5)
        value = data[start + 5 : end]
        if end > 0 and b"\\" not in value:
            return value.decode()
    try:
        return str(json.loads(data)["c"])
    except (ValueError, KeyError, TypeError):
        return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class UserRead:
    """What one request learned about a user from Redis."""

    cached: bytes | None
    profile: profile.UserProfile | None
    attributes: dict[str, Any] | None
    revision: bytes = b""
    """The profile's stored prefix (magic + rev; b"" without a profile) the answer is based on."""
    recent_events: tuple[recent_events.RecentEvent, ...] = ()
    """The user's read-your-writes list (``sr:re:<user>``), most recent first."""

    @property
    def known(self) -> bool:
        """Redis holds something of this user (a profile, attributes, recent events): only
        then is anything stored for the user's answers (cache, what was shown)."""
        return bool(self.revision) or self.attributes is not None or bool(self.recent_events)


@dataclass(frozen=True)
class CatalogMirror:
    """In-memory copy of serving-relevant catalog state (replaced whole on change).

    unavailable: ids of inactive or out-of-stock products; version: ``sr:unavail:ver`` it was
    read at; categories: product id -> category (from ``sr:catalog``); revision bumps whenever
    ``categories`` is replaced.
    """

    unavailable: frozenset[str] = frozenset()
    version: int = -1
    categories: dict[str, str] = field(default_factory=dict)
    revision: int = 0


class RedisState:
    """The recommender's Redis reads (and a few writes) behind one circuit breaker."""

    def __init__(
        self,
        redis: Redis,
        breaker: CircuitBreaker,
        *,
        requests: RespConnection,
        background: Redis | None = None,
    ) -> None:
        self.redis = redis
        self.requests = requests
        """The request path's own connection (``read_user``): lean and pipelined."""
        self.background = background if background is not None else redis
        self.breaker = breaker
        self.reader = profile.ProfileReader(self.background)
        self._products = profile.CodeBook(redis, profile.PRODUCT_DICT)
        self._categories = profile.CodeBook(redis, profile.CATEGORY_DICT)
        self._products_seen = 0
        self._epoch: bytes | None = None
        self._categories_seen = 0
        self.catalog = CatalogMirror()
        self.trending = TrendingMirror()
        self.trending_fresh = False
        """False while the last trending refresh failed (the mirror is getting old)."""
        self._trend_versions: dict[str | None, int] = {}
        """``sr:trend:ver`` as of the lists in ``trending``."""
        self._trend_excluded = CatalogMirror()
        """The catalog mirror whose unavailable set the lists in ``trending`` left out."""

    @property
    def up(self) -> bool:
        return self.breaker.state == "closed"

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis operation under the breaker; RedisUnavailableError on any failure."""
        if not self.breaker.allow():
            raise RedisUnavailableError("circuit open")
        try:
            result = await fn()
        except (RedisError, OSError, TimeoutError) as exc:
            self.breaker.failure()
            raise RedisUnavailableError(str(exc)) from exc
        self.breaker.success()
        return result

    async def bg(self, fn: Callable[[], Awaitable[T]]) -> T:
        """A background operation (longer timeouts, outside the request breaker)."""
        try:
            return await fn()
        except (RedisError, OSError, TimeoutError) as exc:
            raise RedisUnavailableError(str(exc)) from exc

    # --- per request -----------------------------------------------------------------------
    async def read_user(self, user_id: str, cache_field: str | None) -> UserRead:
        """Cache field, profile, attributes and recent events of a user in one round trip."""

        async def run() -> list[Any]:
            users = (
                ("GET", profile.profile_key(user_id)),
                ("GET", profile.user_attributes_key(user_id)),
                (
                    "LRANGE",
                    recent_events.recent_events_key(user_id),
                    0,
                    recent_events.MAX_EVENTS - 1,
                ),
            )
            if cache_field is None:
                return [None, *await self.requests.execute(*users)]
            return await self.requests.execute(
                ("HGET", profile.rec_cache_key(user_id), cache_field), *users
            )

        cached, raw_profile, raw_attrs, raw_recent = await self.call(run)
        prof = None
        if raw_profile is not None:
            try:
                packed = profile.decode_profile(raw_profile)
            except ValueError:
                logger.warning("undecodable profile for user %s", user_id)
            else:
                prof = await self.call(
                    lambda: profile.resolve(user_id, packed, self._products, self._categories)
                )
        attrs = None
        if raw_attrs is not None:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                attrs = profile.decode_user_attributes(raw_attrs)[0]
        revision = bytes(raw_profile[: profile.REV_PREFIX_BYTES]) if raw_profile else b""
        fresh = recent_events.decode_all(raw_recent)
        return UserRead(
            cached=cached, profile=prof, attributes=attrs, revision=revision, recent_events=fresh
        )

    async def read_profiles(self, user_ids: list[str]) -> dict[str, profile.UserProfile]:
        return await self.bg(lambda: self.reader.get_profiles(user_ids))

    # --- background mirrors ----------------------------------------------------------------
    async def check_code_books(self) -> bool:
        """Start the product/category code books afresh if Redis lost them (a restarted,
        emptied Redis re-interns ids from code 0: a new ``sr:epoch`` id, or dictionaries that
        shrank); True if they were reset."""
        pipe = self.background.pipeline(transaction=False)
        pipe.llen(profile.PRODUCT_DICT)
        pipe.llen(profile.CATEGORY_DICT)
        pipe.hget(profile.EPOCH, "id")
        n_products, n_categories, epoch = await self.bg(pipe.execute)
        known, self._epoch = self._epoch, epoch
        if (
            n_products < self._products_seen
            or n_categories < self._categories_seen
            or (known is not None and epoch != known)
        ):
            self._products = profile.CodeBook(self.redis, profile.PRODUCT_DICT)
            self._categories = profile.CodeBook(self.redis, profile.CATEGORY_DICT)
            self.reader = profile.ProfileReader(self.background)
            logger.warning("Redis lost its product/category dictionaries: code books reset")
            reset = True
        else:
            reset = False
        self._products_seen, self._categories_seen = int(n_products), int(n_categories)
        return reset

    async def refresh_unavailable(self) -> bool:
        """Poll ``sr:unavail:ver``; re-read the set when it changed. True if it changed."""
        known = self.catalog.version
        got = await self.bg(lambda: self.reader.unavailable_if_changed(known))
        if got is None:
            return False
        version, ids = got
        cur = self.catalog
        self.catalog = CatalogMirror(ids, version, cur.categories, cur.revision)
        return True

    async def refresh_categories(self, chunk: int = 5000) -> bool:
        """Scan ``sr:catalog`` in chunks (the loop stays responsive); True if categories changed."""
        categories: dict[str, str] = {}
        cursor = 0
        while True:
            cursor, batch = await self.bg(
                lambda c=cursor: self.background.hscan(profile.CATALOG, c, count=chunk)  # type: ignore[misc]
            )
            assert isinstance(batch, dict)
            for pid, raw in batch.items():
                cat = category_of(raw)
                if cat is not None:
                    categories[_text(pid)] = cat
            if cursor == 0:
                break
            await asyncio.sleep(0)
        cur = self.catalog
        if categories == cur.categories:
            return False
        self.catalog = CatalogMirror(cur.unavailable, cur.version, categories, cur.revision + 1)
        return True

    async def refresh_trending(self) -> None:
        """Read every trending list afresh (also the safety net of ``refresh_trending_changes``:
        scores rescaled, lists whose version field was lost)."""
        await self._refreshing(self._refresh_trending)

    async def refresh_trending_changes(self) -> None:
        """Re-read only the trending lists whose ``sr:trend:ver`` field moved since they were
        read (one HGETALL when nothing did); all of them when the unavailable set the mirror
        excluded has changed, or Redis lost the versions."""
        await self._refreshing(self._refresh_trending_changes)

    async def _refreshing(self, refresh: Callable[[], Awaitable[None]]) -> None:
        try:
            await refresh()
        except RedisUnavailableError:
            self.trending_fresh = False
            raise
        self.trending_fresh = True

    async def _refresh_trending(self) -> None:
        excluded = self.catalog
        versions = await self.bg(self.reader.trending_versions)
        cats = await self.bg(self.reader.trending_categories)
        lists = await self._read_trending([None, *sorted(cats)], excluded)
        if lists is None:
            return  # the unavailable set moved: next time, after its own poll
        by_cat = {c: rows for c, rows in lists.items() if c is not None}
        # loaded: read from Redis, even when empty (an empty shop has nothing trending yet,
        # which is an answer, not a reason to stay unready)
        self.trending = TrendingMirror(lists[None], by_cat, loaded=True)
        self._trend_versions, self._trend_excluded = versions, excluded

    async def _refresh_trending_changes(self) -> None:
        if not self.trending.loaded or self.catalog.version != self._trend_excluded.version:
            await self._refresh_trending()
            return
        versions = await self.bg(self.reader.trending_versions)
        known = self._trend_versions
        if any(versions.get(name, -1) < v for name, v in known.items()):
            await self._refresh_trending()  # Redis lost them (a restart, a flush)
            return
        changed = [name for name, v in versions.items() if known.get(name) != v]
        if not changed:
            return
        lists = await self._read_trending(changed, self._trend_excluded)
        if lists is None:
            return
        cur = self.trending
        by_cat = dict(cur.by_category)
        by_cat.update((c, rows) for c, rows in lists.items() if c is not None)
        self.trending = TrendingMirror(lists.get(None, cur.global_), by_cat, loaded=True)
        self._trend_versions = versions

    async def _read_trending(
        self, lists: Sequence[str | None], excluded: CatalogMirror
    ) -> dict[str | None, tuple[tuple[str, float], ...]] | None:
        """The lists without ``excluded``'s unavailable products; None when that set is no
        longer Redis's (``top_trending_lists``)."""
        got = await self.bg(
            lambda: self.reader.top_trending_lists(
                lists,
                k_global=TRENDING_GLOBAL_K,
                k_category=TRENDING_CATEGORY_K,
                exclude=excluded.unavailable,
                exclude_version=excluded.version,
            )
        )
        if got is None:
            return None
        return {name: tuple(rows) for name, rows in got.items()}


def count_degraded(dependency: str) -> None:
    metrics.RECOMMENDER_DEGRADED.labels(dependency).inc()
