"""Fixtures of the recommender's tests without a stack."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from streamrec_recommender.settings import RecommenderSettings


@pytest.fixture
def offline_settings() -> RecommenderSettings:
    """Settings whose Redis, Postgres and Kafka are unreachable (the discard port, where
    nothing listens): the app must answer anyway, degraded."""
    s = RecommenderSettings()
    s.redis.url = SecretStr("redis://127.0.0.1:9/0")
    s.postgres.dsn = SecretStr("postgresql://x@127.0.0.1:9/x")
    s.kafka.bootstrap_servers = "127.0.0.1:9"
    return s
