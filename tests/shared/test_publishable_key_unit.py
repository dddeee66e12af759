"""The publishable (browser) key: events and orders only, rate-limited per client address; and
a process without keys, whose endpoints are open, says so."""

from __future__ import annotations

import pytest

from streamrec_shared.errors import Forbidden, RateLimited
from streamrec_shared.http import KeyRing
from streamrec_shared.settings import ApiKey, AuthSettings, hash_key


def _ring(rate: float = 1.0, burst: float = 2.0) -> KeyRing:
    keys = [
        ApiKey(name="pub", sha256=hash_key("pk"), scopes=["publishable"], rate_per_s=rate,
               burst=burst),
        ApiKey(name="admin", sha256=hash_key("ak"), scopes=["admin"]),
    ]  # fmt: skip
    return KeyRing(AuthSettings(api_keys=keys))


def test_publishable_key_may_send_events() -> None:
    key = _ring().authorize("pk", "events:write", "10.0.0.1")
    assert key is not None
    assert key.name == "pub"


@pytest.mark.parametrize("scope", ["catalog:write", "admin"])
def test_publishable_key_is_refused_everything_else(scope: str) -> None:
    with pytest.raises(Forbidden) as exc:
        _ring().authorize("pk", scope, "10.0.0.1")  # type: ignore[arg-type]
    assert exc.value.details["required_scope"] == scope


def test_publishable_key_is_limited_per_client_not_per_key() -> None:
    ring = _ring(rate=0.001, burst=2.0)
    ring.authorize("pk", "events:write", "10.0.0.1")
    ring.authorize("pk", "events:write", "10.0.0.1")
    with pytest.raises(RateLimited):
        ring.authorize("pk", "events:write", "10.0.0.1")
    # another shopper's browser has its own bucket
    assert ring.authorize("pk", "events:write", "10.0.0.2") is not None


def test_other_keys_keep_one_bucket_per_key() -> None:
    ring = _ring()
    ring.authorize("ak", "admin", "10.0.0.1")
    ring.authorize("ak", "admin", "10.0.0.2")
    assert set(ring.limiter.buckets) == {"admin"}


def test_a_process_without_keys_says_its_endpoints_are_open(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING", logger="streamrec_shared.http"):
        _ring()
        assert not caplog.records
        ring = KeyRing(AuthSettings())
    assert ring.open
    assert ring.authorize(None, "admin") is None  # anyone may
    (record,) = caplog.records
    assert "no API keys configured (STREAMREC_AUTH__API_KEYS)" in record.getMessage()
