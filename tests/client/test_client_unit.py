"""The typed clients against httpx.MockTransport: retries, Retry-After, errors, stable ids."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from streamrec_client import (
    ApiError,
    AsyncStreamrecClient,
    StreamrecClient,
    retry_after_s,
)
from streamrec_client import client as client_module

Handler = Callable[[httpx.Request], httpx.Response]


class Script:
    """Answers requests from a list of (status, headers, body); records every request."""

    def __init__(self, *answers: tuple[int, dict[str, str], Any]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, headers, body = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(body, Exception):
            raise body
        return httpx.Response(status, headers=headers, json=body)

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) if r.content else None for r in self.requests]


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the client's sleeps instead of sleeping."""
    slept: list[float] = []

    async def fake_async_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(client_module, "_async_sleep", fake_async_sleep)
    monkeypatch.setattr(client_module, "_sleep", slept.append)
    return slept


def _async(handler: Handler, **kw: Any) -> AsyncStreamrecClient:
    return AsyncStreamrecClient(
        ingest_url="http://ingest",
        recommender_url="http://rec",
        api_key="secret",
        transport=httpx.MockTransport(handler),
        **kw,
    )


def _sync(handler: Handler, **kw: Any) -> StreamrecClient:
    return StreamrecClient(
        ingest_url="http://ingest", api_key="secret", transport=httpx.MockTransport(handler), **kw
    )


UNAVAILABLE = {"error": {"code": "unavailable", "message": "broker unavailable", "details": None}}


async def test_retries_503_and_429_honouring_retry_after_with_the_same_event_ids(
    sleeps: list[float],
) -> None:
    script = Script(
        (503, {"Retry-After": "2"}, UNAVAILABLE),
        (429, {"Retry-After": "1"}, {"error": {"code": "rate_limited", "message": "slow"}}),
        (202, {}, {"accepted": 2, "event_ids": ["a", "b"]}),
    )
    async with _async(script) as c:
        result = await c.send_events([{"user_id": "u", "event_type": "view", "product_id": "p"},
                                      {"event_id": "mine", "user_id": "u", "event_type": "view",
                                       "product_id": "p"}])  # fmt: skip
    assert result == {"accepted": 2, "event_ids": ["a", "b"]}
    assert sleeps == [2.0, 1.0]
    bodies = script.bodies()
    assert len(bodies) == 3
    ids = [[e["event_id"] for e in b["events"]] for b in bodies]
    assert ids[0] == ids[1] == ids[2]  # generated once, before the first attempt
    assert ids[0][1] == "mine"
    assert all(r.headers["X-API-Key"] == "secret" for r in script.requests)


async def test_validation_errors_raise_at_once_with_details(sleeps: list[float]) -> None:
    details = [{"loc": "events[0].price", "index": 0, "field": "price", "reason": "bad"}]
    script = Script((422, {}, {"error": {"code": "invalid_request", "message": "m",
                                         "details": details}}))  # fmt: skip
    async with _async(script) as c:
        with pytest.raises(ApiError) as info:
            await c.send_event({"user_id": "u", "event_type": "view", "product_id": "p"})
    assert info.value.status == 422
    assert info.value.code == "invalid_request"
    assert info.value.details == details
    assert len(script.requests) == 1
    assert sleeps == []


async def test_gives_up_after_max_retries(sleeps: list[float]) -> None:
    script = Script((503, {"Retry-After": "1"}, UNAVAILABLE))
    async with _async(script, max_retries=3) as c:
        with pytest.raises(ApiError) as info:
            await c.put_user("u1", {"tier": "gold"})
    assert info.value.status == 503
    assert len(script.requests) == 4
    assert sleeps == [1.0, 1.0, 1.0]


async def test_gives_up_when_the_total_wait_would_pass_max_wait(sleeps: list[float]) -> None:
    script = Script((503, {"Retry-After": "20"}, UNAVAILABLE))
    async with _async(script, max_wait=30.0) as c:
        with pytest.raises(ApiError):
            await c.post_order({"order_id": "o1", "user_id": "u", "items": []})
    assert sleeps == [20.0]
    assert len(script.requests) == 2


async def test_connection_errors_are_retried_with_backoff(sleeps: list[float]) -> None:
    script = Script(
        (0, {}, httpx.ConnectError("refused")),
        (0, {}, httpx.ReadTimeout("slow")),
        (202, {}, {"accepted": 1, "product_ids": ["p1"]}),
    )
    async with _async(script) as c:
        result = await c.put_product("p1", {"product_id": "p1", "name": "n", "category": "c",
                                            "price": 1.0})  # fmt: skip
    assert result["product_ids"] == ["p1"]
    assert sleeps == [0.1, 0.2]
    assert script.bodies()[-1] == {"name": "n", "category": "c", "price": 1.0}
    assert script.requests[-1].url.path == "/v1/products/p1"


async def test_no_retry_when_asked(sleeps: list[float]) -> None:
    script = Script((503, {"Retry-After": "1"}, UNAVAILABLE))
    async with _async(script) as c:
        with pytest.raises(ApiError):
            await c.request("POST", "ingest", "/v1/events", json={}, retry=False)
    assert len(script.requests) == 1


async def test_big_batches_are_split_at_1000(sleeps: list[float]) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        events = json.loads(request.content)["events"]
        return httpx.Response(
            202, json={"accepted": len(events), "event_ids": [e["event_id"] for e in events]}
        )

    async with _async(answer) as c:
        events = [{"user_id": "u", "event_type": "view", "product_id": str(i)} for i in range(2500)]
        result = await c.send_events(events)
    assert result["accepted"] == 2500
    assert len(set(result["event_ids"])) == 2500


def test_sync_client_retries_the_same_way(sleeps: list[float]) -> None:
    script = Script(
        (503, {"Retry-After": "3"}, UNAVAILABLE),
        (202, {}, {"accepted": 1, "event_ids": ["x"]}),
    )
    with _sync(script) as c:
        assert c.send_event({"user_id": 1, "event_type": "view", "product_id": 2})["accepted"] == 1
    assert sleeps == [3.0]
    first, second = script.bodies()
    assert first["event_id"] == second["event_id"]
    forbidden = Script((403, {}, {"error": {"code": "forbidden", "message": "scope"}}))
    with _sync(forbidden) as c, pytest.raises(ApiError) as info:
        c.delete_product("p1")
    assert info.value.code == "forbidden"


def test_retry_after_forms() -> None:
    def response(value: str) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": value})

    assert retry_after_s(response("3"), 0) == 3.0
    assert retry_after_s(response("0.5"), 0) == 0.5
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= retry_after_s(response(soon), 0) <= 31
    assert retry_after_s(response("garbage"), 2) == 0.4  # falls back to backoff
    assert retry_after_s(None, 10) == 5.0  # backoff is capped


def test_missing_base_url_is_a_clear_error() -> None:
    with StreamrecClient(ingest_url=None) as c, pytest.raises(ValueError, match="ingest"):
        c.send_event({"user_id": "u", "event_type": "view", "product_id": "p"})
