"""Postgres (asyncpg): pool creation and idempotent schema migrations."""

from __future__ import annotations

import asyncio
import logging
from importlib import resources

import asyncpg

from streamrec_shared.settings import PostgresSettings

logger = logging.getLogger(__name__)

_MIGRATION_LOCK = 74_651_201  # pg_advisory_xact_lock key: one migrator at a time


def migrations() -> list[tuple[str, str]]:
    """(name, sql) of every migration, in order."""
    folder = resources.files("streamrec_shared") / "migrations"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [(f.name, f.read_text()) for f in files]


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply the migrations not applied yet; safe to run concurrently from several services."""
    applied_now: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        for name, sql in migrations():
            if name in done:
                continue
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
            applied_now.append(name)
    if applied_now:
        logger.info("applied migrations %s", applied_now)
    return applied_now


async def create_pool(settings: PostgresSettings, *, attempts: int = 20) -> asyncpg.Pool:
    """Open a pool (retrying while the server starts) and migrate when configured."""
    for attempt in range(attempts):
        try:
            pool: asyncpg.Pool = await asyncpg.create_pool(
                settings.dsn.get_secret_value(),
                min_size=settings.min_size,
                max_size=settings.max_size,
                command_timeout=settings.command_timeout_s,
            )
            break
        except (OSError, asyncpg.CannotConnectNowError, asyncpg.PostgresConnectionError):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(min(0.2 * (attempt + 1), 2.0))
    if settings.migrate:
        async with pool.acquire() as conn:
            await migrate(conn)
    return pool
