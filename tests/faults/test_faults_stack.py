"""The fault matrix: each fault under load on a private stack, then exactly-once and availability.

One private LocalStack (its own broker, Redis, Postgres and services in a temp dir) serves the
module, so killing processes never disturbs the session's shared stack; every test leaves it as
it found it (killed processes restarted, extra workers stopped, limits lifted). Each test runs
``Load`` (tests/faults/load.py) through its fault and recovery, then asserts with ``settled``:
every event answered 202 is in the archive (Postgres) exactly once and counted exactly once in
its user's profile (Redis), and the recommender answered 200 throughout.

The rows of the README's "Fault matrix" point here.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from streamrec_dev.localstack.processes import kill, stop
from streamrec_dev.localstack.stack import LocalStack, StackDescription
from streamrec_dev.synthetic_model import activate, next_version, write_bundle
from streamrec_shared import topics
from streamrec_shared.profile import ProfileReader

from ..ingest.probe import end_offsets, read_since
from ..polling import eventually
from .load import READERS, Load, ShopStack, settled, shop_stack

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShopStack]:
    """A private stack with a small shop and an active model."""
    root = Path(tmp_path_factory.mktemp("faults"))
    with shop_stack(root, n_users=100, n_products=60, events_per_user=10) as shop:
        yield shop


def _load(f: ShopStack) -> Load:
    return Load(f.desc, f"f{uuid.uuid4().hex[:8]}", f.products)


async def _get(url: str) -> httpx.Response | None:
    try:
        async with httpx.AsyncClient(timeout=3) as http:
            return await http.get(url)
    except httpx.HTTPError:
        return None


async def _partitions(url: str) -> list[int]:
    r = await _get(url + "/readyz")
    if r is None or r.status_code != 200:
        return []
    parts: list[int] = r.json()["checks"]["partitions"].get(topics.EVENTS, [])
    return parts


async def _owns(url: str, partitions: list[int], what: str) -> None:
    await eventually(
        lambda: _partitions(url),
        lambda parts: sorted(parts) == sorted(partitions),
        timeout=90,
        what=what,
        interval=0.2,
    )


async def _restart(stack: LocalStack, name: str) -> None:
    stack.start_service(name)
    await asyncio.to_thread(stack.wait_ready, name, timeout=120)


async def _answer(desc: StackDescription) -> dict[str, Any] | None:
    """The recommender's answer for a probe user, None without a 200."""
    r = await _get(desc.urls["recommender"] + "/v1/recommendations/fault-probe?k=3")
    if r is None or r.status_code != 200:
        return None
    answer: dict[str, Any] = r.json()
    return answer


async def _served_version(desc: StackDescription) -> int | None:
    answer = await _answer(desc)
    assert answer is not None, "the recommender did not answer 200"
    version: int | None = answer["model_version"]
    return version


# --- process kills --------------------------------------------------------------------------
async def test_ingest_sigkill_under_load(faults: ShopStack) -> None:
    """Ingest dies: clients get no answer and retry; nothing 202'd is lost or doubled."""
    stack, load = faults.stack, _load(faults)
    async with load.running():
        await load.progress(50)
        await asyncio.to_thread(kill, stack.proc("ingest"))
        await load.progress(0)
        await _restart(stack, "ingest")
        await load.progress(50, what="events acknowledged by the restarted ingest")
    assert load.refusals[0] > 0, "the writers never saw ingest down"
    assert load.misses == []
    await settled(load)


async def test_processor_sigkill_during_a_rebalance(faults: ShopStack) -> None:
    """A second processor joins the group; the first is killed while its partitions are being
    taken from it; the newcomer takes all of them; the first comes back, the newcomer leaves."""
    stack, load = faults.stack, _load(faults)
    first = faults.desc.urls["stream-processor"]
    everything = await _partitions(first)
    assert everything, "the processor owns no events partition"
    async with load.running():
        await load.progress(50)
        extra, second = await asyncio.to_thread(
            stack.start_worker, "stream-processor", "stream-processor-extra"
        )
        try:
            # the newcomer's join revokes (and then splits) the first worker's partitions
            await eventually(
                lambda: _partitions(first),
                lambda parts: len(parts) < len(everything),
                timeout=60,
                what="the rebalance the second worker causes",
                interval=0.05,
            )
            await asyncio.to_thread(kill, stack.proc("stream-processor"))
            await _owns(second, everything, "the second worker owning every partition")
            await load.progress(50)
            await _restart(stack, "stream-processor")
        finally:
            await asyncio.to_thread(stop, extra)
        await _owns(first, everything, "the restarted worker owning every partition again")
        await load.progress(50)
    assert load.misses == []
    await settled(load)


async def test_trainer_sigkill_mid_archive(faults: ShopStack) -> None:
    """The trainer dies while it archives the stream; restarted, it resumes from its committed
    offsets: every event archived once (idempotent on event_id)."""
    stack, load = faults.stack, _load(faults)
    async with load.running():
        await load.progress(80)
        await asyncio.to_thread(kill, stack.proc("trainer"))
        await load.progress(80, what="ingest acknowledging events while the trainer is down")
        await _restart(stack, "trainer")
        await load.progress(50)
    assert load.refusals == {}, "ingest refused events while the trainer was down"
    assert load.misses == []
    await settled(load)


def _listening_workers(parent: psutil.Process, port: int) -> list[psutil.Process]:
    def listens(p: psutil.Process) -> bool:
        try:
            conns = p.net_connections(kind="tcp")
        except psutil.Error:
            return False
        return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns)

    return [c for c in parent.children() if listens(c)]


async def test_recommender_worker_sigkill(faults: ShopStack) -> None:
    """One of the recommender's workers is SIGKILLed: the other worker answers every new
    connection, uvicorn's supervisor starts a replacement. Only requests the killed worker held
    at that instant (at most one per reader) get no answer; none gets a non-200 status."""
    stack, load = faults.stack, _load(faults)
    port = int(faults.desc.urls["recommender"].rsplit(":", 1)[1])
    parent = psutil.Process(stack.proc("recommender").pid)
    # each worker listens once its app has started (model loaded)
    workers = await eventually(
        lambda: asyncio.to_thread(_listening_workers, parent, port),
        lambda now: len(now) >= 2,
        timeout=60,
        what="two recommender workers listening (one would leave nothing to answer)",
        interval=0.2,
    )
    victim = workers[0]
    async with load.running():
        await load.progress(30)
        killed_at = time.monotonic()
        victim.kill()
        await eventually(
            lambda: asyncio.to_thread(_listening_workers, parent, port),
            lambda now: len(now) == len(workers) and victim not in now,
            timeout=60,
            what="the supervisor to replace the killed worker",
            interval=0.2,
        )
        reads = load.reads
        await eventually(lambda: _answer(faults.desc), timeout=30, what="answers after the restart")
        await load.progress(30)
        assert load.reads > reads
    assert all(m.status == 0 for m in load.misses), load.misses
    assert len(load.misses) <= READERS, load.misses
    assert all(m.at >= killed_at for m in load.misses)
    await settled(load)


# --- infrastructure --------------------------------------------------------------------------
async def test_postgres_down(faults: ShopStack) -> None:
    """Postgres dies and comes back: ingest keeps acknowledging events, the recommender keeps
    answering, search says 503, the trainer's archive retries and then catches up."""
    stack, desc, load = faults.stack, faults.desc, _load(faults)
    search = desc.urls["recommender"] + "/v1/products/search?q=item&k=3"
    async with load.running():
        await load.progress(30)
        await asyncio.to_thread(kill, stack.proc("postgres"))
        try:
            await load.progress(80, what="ingest acknowledging events with Postgres down")
            r = await _get(search)
            assert r is not None
            assert r.status_code == 503, r.text
            assert r.headers.get("retry-after")
            trainer = await _get(desc.urls["trainer"] + "/readyz")
            assert trainer is not None
            assert trainer.status_code == 503
        finally:
            await asyncio.to_thread(stack.restart_postgres)
        await eventually(
            lambda: _get(search),
            lambda r: r is not None and r.status_code == 200,
            timeout=60,
            what="search answering again",
            interval=0.5,
        )
        await load.progress(30)
    assert load.refusals == {}, f"ingest refused events: {load.refusals}"
    assert load.misses == []
    await settled(load)


# --- poison records --------------------------------------------------------------------------
POISON = [
    b"\xff\xfe\x00 not json at all",
    b'{"schema_version": 99, "kind": "from another world", "event_id": 7}',
]


async def test_poison_record_on_every_topic(faults: ShopStack) -> None:
    """Undecodable bytes and a wrong schema on events, catalog, users and models: the consumers
    dead-letter or skip them and go on (the load's events, a product and a user written after
    the poison arrive; a model announced after it is served)."""
    desc, load = faults.desc, _load(faults)
    dlq_from = await end_offsets(desc.kafka_bootstrap, topics.DEAD_LETTER)
    producer = AIOKafkaProducer(bootstrap_servers=desc.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for topic in (topics.EVENTS, topics.CATALOG, topics.USERS, topics.MODELS):
            for i, value in enumerate(POISON):
                await producer.send_and_wait(topic, value, key=f"{load.tag}-poison{i}".encode())
    finally:
        await producer.stop()
    product, user = f"{load.tag}-p", f"{load.tag}-buyer"
    redis = Redis.from_url(desc.redis_url)
    async with desc.client() as client, load.running():
        await load.progress(50)
        described = {"name": "after the poison", "category": "poison", "price": 1.0}
        await client.put_product(product, described)
        await client.put_user(user, {"tier": "gold"})
        reader = ProfileReader(redis)
        await eventually(
            lambda: reader.get_products([product]), timeout=30, what="the product in Redis"
        )
        await eventually(
            lambda: reader.get_user_attributes(user), timeout=30, what="the user's attributes"
        )
        version = await _announce_model(desc)
        await eventually(
            lambda: _answer(desc),
            lambda answer: answer is not None and answer["model_version"] == version,
            timeout=60,
            what=f"the recommender serving version {version} announced after the poison",
            interval=0.3,
        )
    await redis.aclose()
    assert load.misses == []
    await settled(load)
    dead = await read_since(desc.kafka_bootstrap, dlq_from)
    ours = {(dict(r.headers)["source_topic"].decode(), r.key.decode()) for r in dead if r.key}
    for topic in (topics.EVENTS, topics.CATALOG, topics.USERS):
        for i in range(len(POISON)):
            assert (topic, f"{load.tag}-poison{i}") in ours, (topic, i, ours)


async def _announce_model(desc: StackDescription) -> int:
    """A small synthetic model over the shop's product ids, registered and announced."""
    version = await next_version(desc.postgres_dsn)
    root = Path(desc.artifacts_uri.removeprefix("file://"))
    directory = await asyncio.to_thread(
        write_bundle, root, version=version, n_items=60, n_users=100, factors=8
    )
    await activate(
        directory, version, postgres_dsn=desc.postgres_dsn, kafka_bootstrap=desc.kafka_bootstrap
    )
    return version


def _listing(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


# --- disk full ---------------------------------------------------------------------------------
async def test_artifact_write_fails(faults: ShopStack) -> None:
    """The trainer cannot write its artifacts (a file size limit on its process: writes fail
    with EFBIG, as they would with ENOSPC on a full disk): the job fails saying why, the active
    model stays active and served, no version directory or staging leftover is published."""
    desc, stack = faults.desc, faults.stack
    root = Path(desc.artifacts_uri.removeprefix("file://"))
    async with desc.client() as client:
        before: dict[str, Any] = await client.request("GET", "trainer", "/v1/models/active")
        served = await _served_version(desc)
        dirs = await asyncio.to_thread(_listing, root)
        trainer = psutil.Process(stack.proc("trainer").pid)
        limit = trainer.rlimit(psutil.RLIMIT_FSIZE)
        trainer.rlimit(psutil.RLIMIT_FSIZE, (4096, limit[1]))
        try:
            job_id = await client.train()
            job = (await client.wait_for_job(job_id, timeout=180)).model_dump()
        finally:
            trainer.rlimit(psutil.RLIMIT_FSIZE, limit)
        assert job["status"] == "failed", job
        assert "File too large" in (job["error"] or ""), job
        after = await client.request("GET", "trainer", "/v1/models/active")
        assert after["version"] == before["version"]
        models = await client.request("GET", "trainer", "/v1/models")
        failed = [m for m in models["models"] if m["version"] == job["model_version"]]
        assert all(m["status"] == "failed" for m in failed), failed
    assert await _served_version(desc) == served
    assert await asyncio.to_thread(_listing, root) == dirs, "a half-written version was left"
