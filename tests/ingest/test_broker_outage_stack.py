"""Kill the broker under a stream of requests; every 202 is archived, the rest got bounded 503s.

Runs on a private stack (broker, Redis, Postgres, trainer, ingest) because it kills and restarts
the broker. The broker is durable here, as Kafka is in production: Tansu keeps its log and the
consumer groups' offsets in an S3 bucket (moto's S3 server on 127.0.0.1), so they survive the
SIGKILL. (The default local broker keeps its log in memory and would lose it.)

What the test proves, phase by phase:
A  broker up: all requests 202; the archive (trainer) then holds every acknowledged event once.
B  broker killed mid-stream: every request is answered 202 or 503 + Retry-After within the
   publish bound (no hang); no request sent after the broker died gets a 202.
C  broker restarted on the same port and storage; the same ingest and trainer processes, not
   restarted, answer 202 and archive again.
End: every event answered 202 in any phase, including those acknowledged just before the
crash, is in the archive exactly once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from streamrec_dev.localstack.processes import kill
from streamrec_dev.localstack.stack import LocalStack, StackDescription

from ..archive import wait_archived
from ..polling import eventually

pytestmark = [pytest.mark.stack, pytest.mark.slow]

PUBLISH_TIMEOUT_S = 2.0  # the shipped default
SLACK_S = 1.5  # HTTP, scheduling and a loaded 2-core machine
SETTLE_S = 3.0  # producer metadata refresh and reconnect after the broker is back
WORKERS = 4
PAUSE_S = 0.01  # between a worker's requests: ~300 requests/s in all, modest CPU


@dataclass
class Outcome:
    event_id: str
    sent: float
    done: float
    status: int  # 0: no answer (transport error or client timeout)
    retry_after: str | None
    message: str = ""


@dataclass
class Outage:
    stack: LocalStack
    desc: StackDescription


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outage]:
    pytest.importorskip("streamrec_trainer.main")
    stack = LocalStack(Path(tmp_path_factory.mktemp("outage")), durable_broker=True)
    desc = stack.start(services=("trainer", "ingest"))
    try:
        stack.wait_ready("ingest", timeout=60)
        stack.wait_ready("trainer", timeout=60)
        yield Outage(stack, desc)
    finally:
        stack.stop()


async def _stream(
    url: str, key: str, tag: str, phase: str, seconds: float, out: list[Outcome]
) -> None:
    """WORKERS loops of single-event POSTs with unique event_ids, for ``seconds``."""
    end = time.monotonic() + seconds

    async def worker(w: int, client: httpx.AsyncClient) -> None:
        n = 0
        while time.monotonic() < end:
            event_id = f"{tag}-{phase}-{w}-{n}"
            n += 1
            body = {
                "event_id": event_id,
                "user_id": f"{tag}-u{n % 50}",
                "event_type": "view",
                "product_id": f"p{n % 20}",
            }
            sent = time.monotonic()
            try:
                r = await client.post("/v1/events", json=body)
                status, retry_after = r.status_code, r.headers.get("retry-after")
                message = "" if status == 202 else r.text[:200]
            except httpx.HTTPError as exc:
                status, retry_after, message = 0, None, repr(exc)
            out.append(Outcome(event_id, sent, time.monotonic(), status, retry_after, message))
            await asyncio.sleep(PAUSE_S)

    async with httpx.AsyncClient(
        base_url=url, headers={"X-API-Key": key}, timeout=PUBLISH_TIMEOUT_S + 10
    ) as client:
        await asyncio.gather(*(worker(w, client) for w in range(WORKERS)))


async def test_broker_outage_mid_stream(outage: Outage) -> None:
    desc, stack = outage.desc, outage.stack
    url, key, dsn = desc.urls["ingest"], desc.api_keys["writer"], desc.postgres_dsn
    tag = uuid.uuid4().hex[:8]
    ingest_pid = stack.proc("ingest").pid

    # A: broker up
    a: list[Outcome] = []
    await _stream(url, key, tag, "a", 1.5, a)
    assert a
    assert {o.status for o in a} == {202}
    archived = await wait_archived(
        dsn, [o.event_id for o in a], what="phase A in the archive", interval=0.5
    )
    assert set(archived.values()) == {1}

    # B: the broker dies while requests are in flight
    b: list[Outcome] = []
    stream = asyncio.create_task(_stream(url, key, tag, "b", 4.0, b))
    await asyncio.sleep(0.7)
    kill_started = time.monotonic()
    await asyncio.to_thread(kill, stack.proc("broker"))  # SIGKILL: a crash, no goodbye
    kill_done = time.monotonic()
    await stream
    statuses = {o.status for o in b}
    assert statuses <= {202, 503}, statuses
    assert 503 in statuses, f"broker stop not noticed (kill took {kill_done - kill_started:.1f}s)"
    assert all(o.retry_after for o in b if o.status == 503)
    slowest = max(o.done - o.sent for o in b)
    assert slowest <= PUBLISH_TIMEOUT_S + SLACK_S, f"a request took {slowest:.2f}s"
    acked_b = [o for o in b if o.status == 202]
    assert all(o.sent <= kill_done for o in acked_b), "202 for a request sent to a dead broker"
    async with httpx.AsyncClient(base_url=url, timeout=10) as probe:
        ready = await probe.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["kafka"] is False
        assert (await probe.get("/healthz")).status_code == 200  # alive, just not ready

    # C: the broker comes back on the same port and storage; ingest and trainer are not touched
    await asyncio.to_thread(stack.restart_broker)
    broker_back = time.monotonic()
    c: list[Outcome] = []

    async def recovered() -> float | None:
        await _stream(url, key, tag, f"c{len(c)}", 0.5, c)
        return next((o.done for o in c if o.status == 202), None)

    recovered_at = await eventually(
        recovered, timeout=30, what="ingest to recover after the broker restart", interval=0
    )
    await _stream(url, key, tag, "c-after", 4.0, c)
    for name in ("ingest", "trainer"):
        assert stack.proc(name).alive(), f"{name} died"
    assert stack.proc("ingest").pid == ingest_pid
    async with httpx.AsyncClient(base_url=url, timeout=10) as probe:
        assert (await probe.get("/readyz")).json()["checks"] == {"kafka": True, "postgres": True}
    settled = recovered_at + SETTLE_S
    late = [
        (round(o.sent - recovered_at, 2), o.message)
        for o in c
        if o.sent > settled and o.status != 202
    ]
    assert late == []
    assert sum(o.sent > settled for o in c) > 20

    # every acknowledged event of every phase, the last ones before the crash included
    acked = [o.event_id for o in (*a, *b, *c) if o.status == 202]
    archived = await wait_archived(
        dsn, acked, what="every acknowledged event in the archive", interval=0.5
    )
    assert set(archived.values()) == {1}
    print(
        f"\nphase A {len(a)} x 202; phase B {len(acked_b)} x 202, "
        f"{sum(o.status == 503 for o in b)} x 503, slowest answer {slowest:.2f}s; phase C: "
        f"first 202 {recovered_at - broker_back:.1f}s after the broker restart, "
        f"{sum(o.status == 202 for o in c)} x 202; all {len(acked)} acknowledged archived once"
    )
