"""Fixtures for trainer tests that need a private Postgres (not the session stack's)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def dsn(private_postgres: str) -> str:
    """A Postgres server of this test module alone, with the streamrec database."""
    return private_postgres
