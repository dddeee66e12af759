"""Named admin definitions (experiments, campaigns): Postgres the truth, Redis and memory caches.

Each kind lives in its own Postgres table (the source of truth). Every pod keeps the whole set
in memory (``Definitions.all``, replaced whole) and refreshes it from Postgres periodically; a
copy of every definition is kept in a Redis hash so pods that start while Postgres is down still
serve the same definitions. After each Postgres refresh the Redis copy is rewritten if it was
lost (a flush, a restart without persistence) or is out of date. Writes go to Postgres first
(``PostgresUnavailableError`` when it is down: the API answers 503), then to Redis (best effort)
and memory. With Postgres down, reads serve the Redis copy, else what memory holds.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

import asyncpg
from redis.exceptions import RedisError

from streamrec_recommender.adapters.redis_state import RedisState, RedisUnavailableError

logger = logging.getLogger(__name__)

_DB_ERRORS = (OSError, asyncpg.PostgresError, TimeoutError)


class PostgresUnavailableError(Exception):
    """Postgres could not be reached (the caller serves from cache)."""


class Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)


class Database:
    """A small lazily created asyncpg pool shared by the definition stores of one pod."""

    def __init__(self, dsn: str | None) -> None:
        self.dsn = dsn
        self.pool: asyncpg.Pool | None = None

    async def get(self) -> asyncpg.Pool:
        if self.dsn is None:
            raise PostgresUnavailableError("no Postgres configured")
        if self.pool is None:
            try:
                self.pool = await asyncpg.create_pool(
                    self.dsn, min_size=0, max_size=3, timeout=2.0, command_timeout=3.0
                )
            except _DB_ERRORS as exc:
                raise PostgresUnavailableError(str(exc)) from exc
        return self.pool

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None


class Definitions(Generic[T]):
    """The definitions of one kind (table and Redis hash), cached in ``all`` (name -> T).

    select: SQL returning every row (``WHERE name = $1`` is appended for one);
    upsert: SQL taking ``params(item)`` and RETURNING the stored row; delete: SQL taking the
    name; from_row: a row as T; to_json / from_json: T as the JSON document of the Redis copy;
    adopt_cache: this kind used to live in Redis only, so the first refresh after the upgrade
    copies the Redis hash into the table (once per table: ``definition_adoptions``).
    """

    def __init__(
        self,
        kind: str,
        db: Database,
        redis: RedisState,
        *,
        redis_key: str,
        select: str,
        upsert: str,
        delete: str,
        params: Callable[[T], tuple[Any, ...]],
        from_row: Callable[[asyncpg.Record], T],
        to_json: Callable[[T], dict[str, Any]],
        from_json: Callable[[dict[str, Any]], T],
        adopt_cache: bool = False,
    ) -> None:
        self.kind = kind
        self.db = db
        self.redis = redis
        self.redis_key = redis_key
        self._select, self._upsert, self._delete = select, upsert, delete
        self._params, self._from_row = params, from_row
        self._to_json, self._from_json = to_json, from_json
        self.all: dict[str, T] = {}
        self._adopt = adopt_cache
        self.postgres_ok = True
        self._cached_digest = ""
        """Digest of the definitions last written to the Redis copy ('' : unknown)."""

    async def refresh(self) -> None:
        """Reload every definition: Postgres first (then repair the Redis copy), the Redis
        copy if Postgres is down; memory is kept when both fail."""
        try:
            pool = await self.db.get()
            if self._adopt:
                await self._adopt_cache(pool)
            rows = await pool.fetch(self._select, timeout=3.0)
        except (PostgresUnavailableError, *_DB_ERRORS) as exc:
            if self.postgres_ok:  # log the change, not every refresh
                logger.warning("%s from Postgres unavailable (%s); using Redis", self.kind, exc)
            self.postgres_ok = False
            await self._from_redis()
            return
        if not self.postgres_ok:
            logger.info("%s: Postgres reachable again", self.kind)
        self.postgres_ok = True
        self.all = {item.name: item for item in map(self._from_row, rows)}
        await self._repair_cache()

    async def _adopt_cache(self, pool: asyncpg.Pool) -> None:
        """Copy the Redis hash into the table, once per table (the first pod to claim the
        ``definition_adoptions`` row does it, in the same transaction)."""
        cached = await self._cached()
        if cached is None:  # Redis down: adopt on a later refresh
            return
        async with pool.acquire() as conn, conn.transaction():
            claimed = await conn.fetchval(
                "INSERT INTO definition_adoptions (kind) VALUES ($1) ON CONFLICT DO NOTHING"
                " RETURNING kind",
                self.kind,
            )
            if claimed is not None and cached:
                for item in cached.values():  # a PUT since wrote the Redis copy too
                    await conn.execute(self._upsert, *self._params(item))
                logger.info("%s: adopted %d from the Redis copy", self.kind, len(cached))
        self._adopt = False

    async def _from_redis(self) -> None:
        cached = await self._cached()
        if cached is not None:
            self.all = cached

    async def _cached(self) -> dict[str, T] | None:
        """The Redis copy (None when Redis is down)."""
        try:
            raw = await self.redis.bg(lambda: self.redis.background.hgetall(self.redis_key))
        except RedisUnavailableError:
            return None
        out: dict[str, T] = {}
        for k, v in raw.items():
            try:
                item = self._from_json(json.loads(v))
            except (ValueError, KeyError, TypeError):
                logger.warning("ignoring malformed cached %s %r", self.kind, k)
                continue
            out[item.name] = item
        return out

    def _docs(self, items: Mapping[str, T]) -> dict[str, str]:
        return {name: json.dumps(self._to_json(item)) for name, item in sorted(items.items())}

    async def _repair_cache(self) -> None:
        """Rewrite the Redis copy when it differs from ``all`` in content (as last written by
        this pod) or in size (flushed, or changed by another pod)."""
        docs = self._docs(self.all)
        digest = hashlib.sha256(json.dumps(docs).encode()).hexdigest()
        try:
            size = await self.redis.background.hlen(self.redis_key)
            if digest == self._cached_digest and size == len(docs):
                return
            pipe = self.redis.background.pipeline(transaction=True)
            pipe.delete(self.redis_key)
            if docs:
                pipe.hset(self.redis_key, mapping=docs)  # type: ignore[arg-type]
            await pipe.execute()
            self._cached_digest = digest
        except (RedisError, OSError, TimeoutError) as exc:
            self._cached_digest = ""
            logger.warning("could not cache %s in Redis: %s", self.kind, exc)

    async def get(self, name: str) -> T | None:
        """One definition, read from Postgres (memory when it is down)."""
        try:
            pool = await self.db.get()
            row = await pool.fetchrow(self._select + " WHERE name = $1", name, timeout=3.0)
        except (PostgresUnavailableError, *_DB_ERRORS):
            return self.all.get(name)
        if row is None:
            return None
        item = self._from_row(row)
        self.all = {**self.all, name: item}
        return item

    async def put(self, item: T) -> T:
        """Persist (Postgres, required), then update the Redis copy and memory."""
        try:
            pool = await self.db.get()
            row = await pool.fetchrow(self._upsert, *self._params(item), timeout=3.0)
        except _DB_ERRORS as exc:
            raise PostgresUnavailableError(str(exc)) from exc
        assert row is not None
        saved = self._from_row(row)
        self.all = {**self.all, saved.name: saved}
        await self._cache_write(
            lambda: self.redis.background.hset(
                self.redis_key, saved.name, json.dumps(self._to_json(saved))
            )
        )
        return saved

    async def delete(self, name: str) -> bool:
        """Remove (Postgres, required), then from the Redis copy and memory; False if absent."""
        try:
            pool = await self.db.get()
            status = await pool.execute(self._delete, name, timeout=3.0)
        except _DB_ERRORS as exc:
            raise PostgresUnavailableError(str(exc)) from exc
        self.all = {k: v for k, v in self.all.items() if k != name}
        await self._cache_write(lambda: self.redis.background.hdel(self.redis_key, name))
        return str(status).split()[-1] != "0"

    async def _cache_write(self, write: Callable[[], Any]) -> None:
        self._cached_digest = ""  # the next refresh checks the copy again
        try:
            await write()
        except (RedisError, OSError, TimeoutError) as exc:
            logger.warning("could not update the cached %s in Redis: %s", self.kind, exc)
