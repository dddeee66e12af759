"""The circuit breaker opens after repeated failures and probes after a while."""

from __future__ import annotations

from streamrec_recommender.adapters.breaker import CircuitBreaker


def test_breaker_cycle() -> None:
    now = [0.0]
    b = CircuitBreaker("redis", failures=2, open_s=1.0, clock=lambda: now[0])
    assert b.allow()
    b.failure()
    assert b.state == "closed"
    b.failure()
    assert b.state == "open"
    assert not b.allow()
    now[0] = 1.5
    assert b.state == "half_open"
    assert b.allow()  # one probe
    assert not b.allow()
    b.failure()
    assert b.state == "open"
    now[0] = 3.0
    assert b.allow()
    b.success()
    assert b.state == "closed"
    assert b.allow()
