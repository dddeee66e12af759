"""The typed clients against httpx.MockTransport: retries, Retry-After, jitter, errors, stable
ids, escaped paths, typed answers."""

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
    EventsAccepted,
    Recommendations,
    RetryPolicy,
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
    """Record the client's sleeps instead of sleeping; jitter draws its maximum (1.0), so a
    Retry-After of ``s`` waits ``1.2 * s`` and the backoff ``0.1 * 2**attempt``."""
    monkeypatch.setattr(client_module, "_random", lambda: 1.0)
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
    assert result == EventsAccepted(accepted=2, event_ids=["a", "b"])
    assert result.event_ids == result["event_ids"] == ["a", "b"]
    assert sleeps == pytest.approx([2.4, 1.2])
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
    assert sleeps == pytest.approx([1.2, 1.2, 1.2])


async def test_gives_up_when_the_total_wait_would_pass_max_wait(sleeps: list[float]) -> None:
    script = Script((503, {"Retry-After": "20"}, UNAVAILABLE))
    async with _async(script, max_wait=30.0) as c:
        with pytest.raises(ApiError):
            await c.post_order({"order_id": "o1", "user_id": "u", "items": []})
    assert sleeps == pytest.approx([24.0])  # the next 24 s would pass max_wait
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
    assert result.product_ids == ["p1"]
    assert sleeps == pytest.approx([0.1, 0.2])
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
    assert result.accepted == 2500
    assert len(set(result.event_ids)) == 2500


def test_sync_client_retries_the_same_way(sleeps: list[float]) -> None:
    script = Script(
        (503, {"Retry-After": "3"}, UNAVAILABLE),
        (202, {}, {"accepted": 1, "event_ids": ["x"]}),
    )
    with _sync(script) as c:
        assert c.send_event({"user_id": 1, "event_type": "view", "product_id": 2}).accepted == 1
    assert sleeps == pytest.approx([3.6])
    first, second = script.bodies()
    assert first["event_id"] == second["event_id"]
    forbidden = Script((403, {}, {"error": {"code": "forbidden", "message": "scope"}}))
    with _sync(forbidden) as c, pytest.raises(ApiError) as info:
        c.delete_product("p1")
    assert info.value.code == "forbidden"


def test_retry_after_forms() -> None:
    def response(value: str) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": value})

    assert retry_after_s(response("3")) == 3.0
    assert retry_after_s(response("0.5")) == 0.5
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (retry_after_s(response(soon)) or 0) <= 31
    assert retry_after_s(response("garbage")) is None
    assert retry_after_s(None) is None


def test_backoff_has_full_jitter_and_never_waits_less_than_retry_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy = RetryPolicy()
    monkeypatch.setattr(client_module, "_random", lambda: 0.0)
    assert policy.delay(3, None) == 0.0
    assert policy.delay(3, httpx.Response(503, headers={"Retry-After": "2"})) == 2.0
    monkeypatch.setattr(client_module, "_random", lambda: 1.0)
    assert policy.delay(3, None) == pytest.approx(0.8)
    assert policy.delay(20, None) == 5.0  # capped
    assert policy.delay(0, httpx.Response(503, headers={"Retry-After": "2"})) == 2.4
    monkeypatch.undo()
    draws = {policy.delay(2, None) for _ in range(50)}
    assert len(draws) > 40  # spread, not lock-step
    assert all(0.0 <= d <= 0.4 for d in draws)


async def test_ids_in_paths_are_escaped_and_answers_typed(sleeps: list[float]) -> None:
    answer = {"user_id": "a/b?c", "rec_id": "r1", "algorithm": "als", "items": [
        {"product_id": "p1", "score": 0.5}], "experiment": {"name": "e", "variant": "v"},
        "future_field": 1}  # fmt: skip
    script = Script((200, {}, answer))
    async with _async(script) as c:
        rec = await c.recommendations("a/b?c", k=5)
    assert script.requests[0].url.raw_path == b"/v1/recommendations/a%2Fb%3Fc?k=5"
    assert isinstance(rec, Recommendations)
    assert rec.items[0].product_id == "p1"
    assert rec.experiment is not None
    assert rec.experiment.variant == "v"
    assert rec["items"][0]["score"] == 0.5
    assert rec.model_extra == {"future_field": 1}
    # reads like the JSON object it came from
    assert set(rec) == {"user_id", "rec_id", "algorithm", "items", "experiment", "future_field"}
    assert "model_version" not in rec
    assert rec.get("model_version", -1) == -1
    assert rec.get("experiment", {}).get("name") == "e"
    assert dict(rec.items[0]) == {"product_id": "p1", "score": 0.5}
    assert rec.model_dump()["items"] == [{"product_id": "p1", "score": 0.5}]
    assert rec == Recommendations.model_validate(answer)


def test_wait_for_job_polls_until_finished(sleeps: list[float]) -> None:
    script = Script(
        (200, {}, {"job_id": "j/1", "status": "queued"}),
        (200, {}, {"job_id": "j/1", "status": "running"}),
        (200, {}, {"job_id": "j/1", "status": "published", "model_version": 3}),
    )
    with StreamrecClient(trainer_url="http://t", transport=httpx.MockTransport(script)) as c:
        job = c.wait_for_job("j/1")
    assert (job.status, job.model_version) == ("published", 3)
    assert [r.url.raw_path for r in script.requests] == [b"/v1/train/j%2F1"] * 3
    assert len(sleeps) == 2


def test_missing_base_url_is_a_clear_error() -> None:
    with StreamrecClient(ingest_url=None) as c, pytest.raises(ValueError, match="ingest"):
        c.send_event({"user_id": "u", "event_type": "view", "product_id": "p"})
