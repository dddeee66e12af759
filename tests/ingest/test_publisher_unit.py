"""The publisher on its own: bounded waits, background start, replacing a dead producer."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

from streamrec_ingest.publisher import Publisher
from streamrec_shared.errors import RetryableError

from .fakes import FakeProducer


def _publisher(producers: list[FakeProducer], **kw: float) -> Publisher:
    made = iter(producers)
    return Publisher(
        lambda: next(made),
        timeout_s=kw.get("timeout_s", 0.2),
        retry_after_s=1.0,
        start_retry_s=0.01,
    )


async def test_publish_waits_for_every_ack() -> None:
    producer = FakeProducer()
    publisher = _publisher([producer])
    await publisher.start()
    await publisher.publish("t", [(b"k1", b"v1"), (None, b"v2")])
    assert [(s.topic, s.key, s.value) for s in producer.sent] == [
        ("t", b"k1", b"v1"),
        ("t", None, b"v2"),
    ]
    await publisher.close()
    assert producer.stopped


async def test_unacknowledged_publish_is_retryable_within_the_bound() -> None:
    producer = FakeProducer(mode="hang")
    publisher = _publisher([producer], timeout_s=0.2)
    await publisher.start()
    started = time.monotonic()
    with pytest.raises(RetryableError) as info:
        await publisher.publish("t", [(b"k", b"v")])
    assert time.monotonic() - started < 1.0
    assert info.value.retry_after == 1.0
    assert "0.2 s" in info.value.message
    await publisher.close()


async def test_a_producer_whose_sender_died_is_replaced() -> None:
    dead, fresh = FakeProducer(mode="error"), FakeProducer()
    finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    finished.set_result(None)
    dead._sender = SimpleNamespace(sender_task=finished)  # type: ignore[attr-defined]
    publisher = _publisher([dead, fresh])
    await publisher.start()
    with pytest.raises(RetryableError):
        await publisher.publish("t", [(b"k", b"v")])
    deadline = time.monotonic() + 5
    while publisher.started is False or fresh.starts == 0:
        assert time.monotonic() < deadline, "no new producer"
        await asyncio.sleep(0.01)
    await publisher.publish("t", [(b"k", b"v")])
    assert dead.stopped
    assert len(fresh.sent) == 1
    await publisher.close()


async def test_a_failing_producer_with_a_live_sender_is_kept() -> None:
    flaky = FakeProducer(mode="error")
    publisher = _publisher([flaky])
    await publisher.start()
    with pytest.raises(RetryableError):
        await publisher.publish("t", [(b"k", b"v")])
    flaky.mode = "ok"
    await publisher.publish("t", [(b"k", b"v")])  # the same producer, recovered
    assert len(flaky.sent) == 1
    await publisher.close()
