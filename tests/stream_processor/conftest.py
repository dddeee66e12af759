"""Fixtures for the stream-processor tests: a private Redis server, and a store on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from pydantic import SecretStr
from redis.asyncio import Redis

from streamrec_shared.settings import RedisSettings
from streamrec_stream_processor.store import RedisStore


@pytest.fixture(scope="session")
def redis_url(private_redis: str) -> str:
    """A Redis server of our own (not the stack's): unit tests may FLUSHDB it."""
    return private_redis


@pytest_asyncio.fixture(loop_scope="session")
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


@pytest_asyncio.fixture(loop_scope="session")
async def store(redis_url: str, redis: Redis) -> AsyncIterator[RedisStore]:
    """A started ``RedisStore`` on an empty database (trending half-life 1 day)."""
    s = RedisStore(
        RedisSettings(url=SecretStr(redis_url)), timeout_s=5.0, trending_half_life_s=86_400.0
    )
    await s.start()
    try:
        yield s
    finally:
        await s.stop()
