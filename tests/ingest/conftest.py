"""Fixtures for the ingest unit tests: an app on a fake producer, and a client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from streamrec_dev.localstack.stack import StackDescription
from streamrec_ingest.app import create_app
from streamrec_ingest.fastpath import with_fast_path

from .fakes import KEYS, FakeProducer, unit_settings


@pytest.fixture
def producer() -> FakeProducer:
    return FakeProducer()


@pytest_asyncio.fixture(loop_scope="session")
async def app(producer: FakeProducer) -> AsyncIterator[FastAPI]:
    application = create_app(unit_settings(), producer=producer)
    async with application.router.lifespan_context(application):
        yield application


@pytest_asyncio.fixture(loop_scope="session")
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of what uvicorn serves: the app behind its fast path for POST /v1/events."""
    transport = httpx.ASGITransport(app=with_fast_path(app))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://ingest", headers={"X-API-Key": KEYS["admin"]}
    ) as client:
        yield client


@pytest_asyncio.fixture(loop_scope="session")
async def raw(stack: StackDescription) -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client (no retries) with the admin key, against the stack's ingest."""
    async with httpx.AsyncClient(
        base_url=stack.urls["ingest"], headers={"X-API-Key": stack.api_keys["admin"]}, timeout=10
    ) as c:
        yield c


@pytest_asyncio.fixture(loop_scope="session")
async def db(stack: StackDescription) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(stack.postgres_dsn)
    try:
        yield conn
    finally:
        await conn.close()
