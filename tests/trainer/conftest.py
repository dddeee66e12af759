"""Fixtures for trainer tests that need a private Postgres (not the session stack's)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streamrec_dev.localstack import infra
from streamrec_dev.localstack.processes import free_port, stop


@pytest.fixture(scope="module")
def dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Postgres server of this test module alone, with the streamrec database."""
    root = tmp_path_factory.mktemp("pg")
    port = free_port()
    proc = infra.start_postgres(port, root / "data", root)
    try:
        yield f"postgresql://streamrec@127.0.0.1:{port}/streamrec"
    finally:
        stop(proc)
