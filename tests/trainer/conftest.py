"""Fixtures for trainer tests that need a private Postgres (not the session stack's)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from streamrec_shared.postgres import create_pool
from streamrec_shared.settings import PostgresSettings


@pytest.fixture(scope="module")
def dsn(private_postgres: str) -> str:
    """A Postgres server of this test module alone, with the streamrec database."""
    return private_postgres


@pytest_asyncio.fixture(loop_scope="session")
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the module's Postgres, with the archive, catalog and registry tables empty."""
    pool = await create_pool(PostgresSettings(dsn=dsn, max_size=2))
    await pool.execute(
        "TRUNCATE user_product_interactions, model_versions, users, products, erased_users CASCADE"
    )
    try:
        yield pool
    finally:
        await pool.close()
