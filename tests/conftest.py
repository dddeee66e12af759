"""Test fixtures: one real local stack per test session (broker, Redis, Postgres, services).

Where a Docker engine is available, ``STREAMREC_TEST_EXTERNAL=1`` with the usual
``STREAMREC_*`` settings can point the services at containers instead; here the fixture starts
local processes in a temp dir on free ports and stops them afterwards.
``STREAMREC_TEST_SERVICES=ingest,trainer`` starts only some services (while developing).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from streamrec_client import AsyncStreamrecClient
from streamrec_dev.localstack.stack import SERVICES, LocalStack, StackDescription


def _services() -> tuple[str, ...]:
    wanted = os.environ.get("STREAMREC_TEST_SERVICES")
    if not wanted:
        return tuple(SERVICES)
    return tuple(s.strip() for s in wanted.split(",") if s.strip())


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The running stack object (start/stop/kill individual processes in failure tests)."""
    state: Path = tmp_path_factory.mktemp("stack")
    stack = LocalStack(state)
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
    async with AsyncStreamrecClient(
        ingest_url=stack.urls["ingest"],
        recommender_url=stack.urls["recommender"],
        trainer_url=stack.urls["trainer"],
        api_key=stack.api_keys["admin"],
    ) as c:
        yield c
