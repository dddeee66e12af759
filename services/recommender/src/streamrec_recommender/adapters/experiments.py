"""Experiments: persisted in Postgres (table ``experiments``), cached in memory and Redis.

Postgres is the source of truth; a copy of every definition is kept in the Redis hash
``sr:experiments`` so pods that start while Postgres is down still split traffic the same way,
and each pod refreshes its in-memory list every ``experiments_refresh_s``. Assignment itself is
pure (``policy.Experiment.assign``) and needs no storage at all.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import asyncpg
from redis.exceptions import RedisError

from streamrec_recommender.adapters.redis_state import RedisState, RedisUnavailableError
from streamrec_recommender.serving.policy import Experiment, Variant

logger = logging.getLogger(__name__)

REDIS_KEY = "sr:experiments"

_UPSERT = """
INSERT INTO experiments (name, status, variants, description)
VALUES ($1, $2, $3::jsonb, $4)
ON CONFLICT (name) DO UPDATE SET status = EXCLUDED.status, variants = EXCLUDED.variants,
    description = EXCLUDED.description, updated_at = now()
RETURNING name, status, variants, description, created_at, updated_at
"""
_SELECT = "SELECT name, status, variants, description, created_at, updated_at FROM experiments"


class PostgresUnavailableError(Exception):
    """Postgres could not be reached (the caller serves from cache)."""


def to_json(exp: Experiment) -> dict[str, Any]:
    return {
        "name": exp.name,
        "status": exp.status,
        "description": exp.description,
        "variants": [
            {"name": v.name, "algorithm": v.algorithm, "weight": v.weight} for v in exp.variants
        ],
        "control": exp.control.name if exp.variants else None,
    }


def from_json(doc: dict[str, Any]) -> Experiment:
    return Experiment(
        name=str(doc["name"]),
        status=str(doc["status"]),
        description=str(doc.get("description") or ""),
        variants=tuple(
            Variant(str(v["name"]), str(v["algorithm"]), float(v["weight"]))
            for v in doc["variants"]
        ),
    )


def _from_row(row: asyncpg.Record) -> Experiment:
    variants = row["variants"]
    if isinstance(variants, str):
        variants = json.loads(variants)
    return from_json(
        {
            "name": row["name"],
            "status": row["status"],
            "description": row["description"],
            "variants": variants,
        }
    )


class ExperimentStore:
    def __init__(self, dsn: str | None, redis: RedisState) -> None:
        self.dsn = dsn
        self.redis = redis
        self.pool: asyncpg.Pool | None = None
        self.all: dict[str, Experiment] = {}
        self.postgres_ok = True

    @property
    def running(self) -> list[Experiment]:
        return [e for e in self.all.values() if e.running]

    async def _pool(self) -> asyncpg.Pool:
        if self.dsn is None:
            raise PostgresUnavailableError("no Postgres configured")
        if self.pool is None:
            try:
                self.pool = await asyncpg.create_pool(
                    self.dsn, min_size=0, max_size=3, timeout=2.0, command_timeout=3.0
                )
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                raise PostgresUnavailableError(str(exc)) from exc
        return self.pool

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def refresh(self) -> None:
        """Reload every experiment: Postgres first, the Redis copy if Postgres is down."""
        try:
            pool = await self._pool()
            rows = await pool.fetch(_SELECT, timeout=3.0)
            self.all = {r["name"]: _from_row(r) for r in rows}
            if not self.postgres_ok:
                logger.info("experiments: Postgres reachable again")
            self.postgres_ok = True
            return
        except (PostgresUnavailableError, OSError, asyncpg.PostgresError, TimeoutError) as exc:
            if self.postgres_ok:  # log the change, not every refresh
                logger.warning("experiments from Postgres unavailable (%s); using Redis", exc)
            self.postgres_ok = False
        try:
            raw = await self.redis.bg(lambda: self.redis.background.hgetall(REDIS_KEY))
        except RedisUnavailableError:
            return
        self.all = {
            (k.decode() if isinstance(k, bytes) else str(k)): from_json(json.loads(v))
            for k, v in raw.items()
        }

    async def get(self, name: str) -> Experiment | None:
        try:
            pool = await self._pool()
            row = await pool.fetchrow(_SELECT + " WHERE name = $1", name, timeout=3.0)
        except (PostgresUnavailableError, OSError, asyncpg.PostgresError, TimeoutError):
            return self.all.get(name)
        if row is None:
            return None
        exp = _from_row(row)
        self.all[name] = exp
        return exp

    async def put(self, exp: Experiment) -> Experiment:
        """Persist (Postgres, required), then update the Redis copy and memory."""
        doc = to_json(exp)
        try:
            pool = await self._pool()
            row = await pool.fetchrow(
                _UPSERT,
                exp.name,
                exp.status,
                json.dumps(doc["variants"]),
                exp.description,
                timeout=3.0,
            )
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise PostgresUnavailableError(str(exc)) from exc
        assert row is not None
        saved = _from_row(row)
        self.all[saved.name] = saved
        try:
            await self.redis.background.hset(REDIS_KEY, saved.name, json.dumps(to_json(saved)))
        except (RedisError, OSError, TimeoutError) as exc:
            logger.warning("could not cache experiment %s in Redis: %s", saved.name, exc)
        return saved
