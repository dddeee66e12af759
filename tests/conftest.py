"""Test fixtures: one real local stack per test session (broker, Redis, Postgres, services).

Where a Docker engine is available, ``STREAMREC_TEST_EXTERNAL=1`` with the usual
``STREAMREC_*`` settings can point the services at containers instead; here the fixture starts
local processes in a temp dir on free ports and stops them afterwards.
``STREAMREC_TEST_SERVICES=ingest,trainer`` starts only some services (while developing).

Every fixture that starts a server process is listed in ``SERVER_FIXTURES``; a test that uses
one of them, directly or through another fixture, is marked ``stack`` at collection
(``pytest_collection_modifyitems``), so ``pytest -m "not stack"`` (``make test-fast``) never
starts a process. moto's S3 server (tests/shared) runs in a thread of the test process and does
not count.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from streamrec_client import AsyncStreamrecClient
from streamrec_dev.localstack import infra
from streamrec_dev.localstack.processes import Proc, free_port, stop
from streamrec_dev.localstack.stack import SERVICES, LocalStack, StackDescription

SERVER_FIXTURES = frozenset({"local_stack", "private_postgres", "private_redis"})
"""Fixtures that start processes: whatever uses them is a ``stack`` test."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.stack)


def _services() -> tuple[str, ...]:
    wanted = os.environ.get("STREAMREC_TEST_SERVICES")
    if not wanted:
        return tuple(SERVICES)
    return tuple(s.strip() for s in wanted.split(",") if s.strip())


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The running stack object (start/stop/kill individual processes in failure tests)."""
    state: Path = tmp_path_factory.mktemp("stack")
    # no retraining by itself and no canary rollout: tests decide when models are trained and
    # see them active (test_triggers_stack and test_rollout_stack turn them on for themselves)
    stack = LocalStack(state, triggers=False)
    stack.start(services=_services())
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def stack(local_stack: LocalStack) -> StackDescription:
    """The description of the running stack (URLs, bootstrap, Redis/Postgres URLs, keys)."""
    assert local_stack.desc is not None
    return local_stack.desc


@pytest_asyncio.fixture(loop_scope="session")
async def client(stack: StackDescription) -> AsyncIterator[AsyncStreamrecClient]:
    """An admin-keyed client for every service of the stack."""
    async with stack.client() as c:
        yield c


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def module_client(stack: StackDescription) -> AsyncIterator[AsyncStreamrecClient]:
    """``client`` for the module-scoped fixtures (a model or shop set up once per module)."""
    async with stack.client() as c:
        yield c


@contextlib.contextmanager
def _server(
    tmp_path_factory: pytest.TempPathFactory, start: Callable[[int, Path, Path], Proc], url: str
) -> Iterator[str]:
    """Run ``start(port, data_dir, log_dir)`` on a free port; yield ``url`` with that port."""
    root = tmp_path_factory.mktemp("server")
    port = free_port()
    proc = start(port, root / "data", root)
    try:
        yield url.format(port=port)
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def private_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The DSN of a Postgres server of the requesting test module alone (database streamrec)."""
    dsn = "postgresql://streamrec@127.0.0.1:{port}/streamrec"
    with _server(tmp_path_factory, infra.start_postgres, dsn) as url:
        yield url


@pytest.fixture(scope="session")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a Redis server of our own (not the stack's): unit tests may FLUSHDB it."""
    with _server(tmp_path_factory, infra.start_redis, "redis://127.0.0.1:{port}/0") as url:
        yield url
