"""prod's Redis ACL: the wiring in the rendered overlay, and the services' Redis code run as the
ACL user against a real Redis configured the way prod's is.

The Redis of this test gets its ACL file from the prod ConfigMap's own init script
(``acl-init.sh``, its two directories moved to a temporary one) and the rules in it, so the
default user is off and every client must log in as ``streamrec`` with the password the
services read from ``STREAMREC_REDIS__PASSWORD``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from streamrec_dev.localstack import infra
from streamrec_dev.localstack.processes import free_port, port_open, spawn, stop, wait_until
from streamrec_ingest.recent import RecentWriter
from streamrec_ingest.settings import IngestSettings
from streamrec_recommender.adapters.impressions import OnlineRecorder
from streamrec_recommender.adapters.redis_state import connect
from streamrec_recommender.online import RecTag
from streamrec_recommender.settings import RecommenderSettings
from streamrec_shared import topics
from streamrec_shared.events import EventIn, ProductRecord, UserErased, UserRecord, encode
from streamrec_shared.profile import ProfileReader
from streamrec_shared.recent_events import recent_events_key
from streamrec_shared.resp import RespConnection
from streamrec_shared.settings import RedisSettings
from streamrec_stream_processor.foldin import ModelHandle
from streamrec_stream_processor.profiles import ProfileConfig
from streamrec_stream_processor.settings import ProcessorSettings
from streamrec_stream_processor.store import RedisStore
from streamrec_stream_processor.updater import (
    CatalogUpdater,
    EventUpdater,
    Record,
    UserUpdater,
)
from streamrec_trainer.settings import TrainerSettings

Manifest = dict[str, Any]
SERVICES = ("ingest", "recommender", "stream-processor", "trainer")
PASSWORD = "not/so:simple@password"
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def find(objects: list[Manifest], kind: str, name: str) -> Manifest:
    (obj,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def env_of(container: Manifest) -> dict[str, Manifest]:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.mark.parametrize("overlay", ["prod", "prod-keda"])
def test_prod_redis_has_acl_users_from_a_secret(
    overlay: str, rendered: dict[str, list[Manifest]]
) -> None:
    objects = rendered[overlay]
    config = find(objects, "ConfigMap", "redis-config")["data"]
    assert "include /usr/local/etc/redis/acl.conf" in config["redis.conf"]
    assert config["acl.conf"].strip() == "aclfile /run/redis-acl/users.acl"
    assert 'echo "user default off"' in config["acl-init.sh"]
    rules = config["streamrec.acl"].split()
    assert rules[:3] == ["resetchannels", "~sr:*", "&sr:*"]
    assert rules[3] == "-@all"
    assert rules[-1] == "-@dangerous"
    secret = {"name": "streamrec-redis", "key": "password"}
    pod = find(objects, "Deployment", "redis")["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert env_of(init)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == secret
    assert {"name": "acl", "mountPath": "/run/redis-acl"} in init["volumeMounts"]
    (redis,) = pod["containers"]
    assert env_of(redis)["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"] == secret
    assert "--user streamrec" in " ".join(redis["readinessProbe"]["exec"]["command"])
    (volume,) = [v for v in pod["volumes"] if v["name"] == "acl"]
    assert volume["emptyDir"]["medium"] == "Memory"
    common = find(objects, "ConfigMap", "streamrec-common")["data"]
    assert common["STREAMREC_REDIS__USERNAME"] == "streamrec"
    for service in SERVICES:
        container = find(objects, "Deployment", service)["spec"]["template"]["spec"]
        env = env_of(container["containers"][0])
        assert env["STREAMREC_REDIS__PASSWORD"]["valueFrom"]["secretKeyRef"] == secret, service


def test_dev_redis_keeps_the_default_user(rendered: dict[str, list[Manifest]]) -> None:
    objects = rendered["dev"]
    config = find(objects, "ConfigMap", "redis-config")["data"]
    assert "aclfile" not in config["acl.conf"]
    pod = find(objects, "Deployment", "redis")["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    for service in SERVICES:
        container = find(objects, "Deployment", service)["spec"]["template"]["spec"]
        assert "STREAMREC_REDIS__PASSWORD" not in env_of(container["containers"][0])


@pytest.fixture(scope="module")
def acl_redis(
    rendered: dict[str, list[Manifest]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A Redis with prod's ACL file, written by prod's init script: its plain URL (no user)."""
    config = find(rendered["prod"], "ConfigMap", "redis-config")["data"]
    root = tmp_path_factory.mktemp("acl-redis")
    (root / "streamrec.acl").write_text(config["streamrec.acl"])
    script = (
        config["acl-init.sh"]
        .replace("/usr/local/etc/redis", str(root))
        .replace("/run/redis-acl", str(root))
    )
    subprocess.run(["sh", "-c", script], env={**os.environ, "REDIS_PASSWORD": PASSWORD}, check=True)
    acl = (root / "users.acl").read_text()
    assert PASSWORD not in acl  # only its SHA-256
    port = free_port()
    proc = spawn(
        "redis-acl",
        [
            infra.redis_bin(),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(root),
            "--aclfile", str(root / "users.acl"),
        ],
        log_dir=root,
    )  # fmt: skip
    try:
        wait_until(lambda: port_open(port), timeout=20, what="Redis with prod's ACL file")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc)


@pytest.fixture
def service_env(acl_redis: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The environment prod gives the services (URL, ACL user, password from the Secret)."""
    for name in list(os.environ):
        if name.startswith("STREAMREC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STREAMREC_REDIS__URL", acl_redis)
    monkeypatch.setenv("STREAMREC_REDIS__USERNAME", "streamrec")
    monkeypatch.setenv("STREAMREC_REDIS__PASSWORD", PASSWORD)
    return acl_redis


def test_the_credentials_reach_every_client(service_env: str) -> None:
    """Each service's settings write user and password into the URL its clients are built
    from: redis-py's connection pool and the lean RESP connection log in with them."""
    for cls in (IngestSettings, RecommenderSettings, ProcessorSettings, TrainerSettings):
        redis = cls().redis
        assert redis.username == "streamrec", cls
        client = connect(redis)
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["username"], kwargs["password"]) == ("streamrec", PASSWORD), cls
        lean = RespConnection(redis.url.get_secret_value(), timeout_s=1.0, connect_timeout_s=1.0)
        assert (lean._url.username, lean._url.password) == (
            "streamrec",
            "not%2Fso%3Asimple%40password",
        )


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ({"url": "redis://h:1/0"}, "redis://h:1/0"),
        ({"url": "redis://h:1/0", "password": "p w"}, "redis://:p%20w@h:1/0"),
        ({"url": "rediss://old:x@h/2", "username": "u", "password": "p"}, "rediss://u:p@h/2"),
        ({"url": "unix:///run/r.sock", "password": "p"}, "unix://:p@/run/r.sock"),
    ],
)
def test_credentials_are_written_into_the_url(given: dict[str, str], url: str) -> None:
    assert RedisSettings.model_validate(given).url.get_secret_value() == url


def test_a_username_needs_a_password() -> None:
    with pytest.raises(ValueError, match=r"redis\.username needs redis\.password"):
        RedisSettings.model_validate({"username": "streamrec"})


@pytest_asyncio.fixture(loop_scope="session")
async def as_streamrec(service_env: str) -> AsyncIterator[Redis]:
    """A redis-py client logged in as ``streamrec`` (from the processor's settings)."""
    client = connect(ProcessorSettings().redis, timeout_s=5.0)
    try:
        yield client
    finally:
        await client.aclose()


class DeadLetters:
    def __init__(self) -> None:
        self.records: list[tuple[Record, str, str]] = []

    async def __call__(self, rec: Record, reason: str, error: str) -> None:
        self.records.append((rec, reason, error))


def _event(n: int, user: str, product: str) -> Record:
    e = EventIn(user_id=user, event_type="view", product_id=product, event_id=f"acl-{n}")
    record = e.to_record(T0)
    return Record(topics.EVENTS, 0, n, user.encode(), encode(record))


async def test_the_services_redis_work_runs_as_the_acl_user(
    service_env: str, as_streamrec: Redis
) -> None:
    """Everything each service does in Redis is allowed to ``streamrec``: the processor's
    scripts (catalog, profiles, trending, event ids, code books, attributes, erasure) and
    reads, ingest's recent events, the recommender's impressions and result cache and its lean
    connection's reads; what it must not do is refused."""
    settings = ProcessorSettings()
    store = RedisStore(settings.redis, timeout_s=5.0, trending_half_life_s=86_400.0)
    await store.start()
    try:
        dead = DeadLetters()
        catalog = CatalogUpdater(store, dead)
        product = ProductRecord(
            product_id="acl-p1", name="kettle", category="kitchen", price=9.5, updated_at=T0
        )
        await catalog.apply([Record(topics.CATALOG, 0, 0, b"acl-p1", encode(product))])
        events = EventUpdater(store, ModelHandle(store), ProfileConfig(), dead)
        await events.apply([_event(1, "acl-u1", "acl-p1"), _event(2, "acl-u1", "acl-nowhere")])
        await events.apply([_event(1, "acl-u1", "acl-p1")])  # redelivered: recognised
        users = UserUpdater(store, dead)
        attrs = UserRecord(user_id="acl-u2", attributes={"tier": "gold"}, updated_at=T0)
        await users.apply([Record(topics.USERS, 0, 0, b"acl-u2", encode(attrs))])
        assert dead.records == []

        reader = ProfileReader(as_streamrec)
        profile = await reader.get_profile("acl-u1")
        assert profile is not None
        assert profile.event_count == 2
        assert [p for p, _ in await reader.top_trending(5)] == ["acl-p1"]  # one undescribed
        assert (await reader.unavailable_products())[1] == frozenset({"acl-nowhere"})
        assert await reader.get_user_attributes("acl-u2") == {"tier": "gold"}

        # ingest: read-your-writes list over the lean connection
        ingest = IngestSettings().redis
        writer = RecentWriter.connect(ingest)
        await writer.remember(
            [EventIn(user_id="acl-u1", event_type="click", product_id="acl-p1")], T0.timestamp()
        )
        assert await as_streamrec.llen(recent_events_key("acl-u1")) == 1
        writer.redis.close()

        # recommender: impressions and result cache (Lua), reads on the lean connection
        recommender = RecommenderSettings().redis
        recorder = OnlineRecorder(as_streamrec, window_s=3600, retention_s=7200, cache_ttl_s=60)
        recorder.impression("acl-u1", "rec-1", RecTag(T0.timestamp(), "als", "new"), ["acl-p1"])
        revision = (await as_streamrec.getrange("sr:u:acl-u1", 0, 4)) or b""
        recorder.cache("acl-u1", "f", b"answer", revision)
        await recorder.flush()
        lean = RespConnection(
            recommender.url.get_secret_value(), timeout_s=2.0, connect_timeout_s=2.0
        )
        assert await lean.execute(("HGET", "sr:rc:acl-u1", "f")) == [b"answer"]
        with pytest.raises(ResponseError, match="NOPERM"):
            await lean.execute(("GET", "not-ours"))
        lean.close()

        # erasure (users.v1) as the same user
        gone = UserErased(user_id="acl-u1", erased_at=T0)
        await users.apply([Record(topics.USERS, 0, 1, b"acl-u1", encode(gone))])
        assert await reader.get_profile("acl-u1") is None
        assert await as_streamrec.exists(recent_events_key("acl-u1")) == 0
    finally:
        await store.stop()

    for refused in (("FLUSHALL",), ("KEYS", "*"), ("CONFIG", "GET", "maxmemory")):
        with pytest.raises(NoPermissionError):
            await as_streamrec.execute_command(*refused)
    with pytest.raises(NoPermissionError):
        await as_streamrec.set("outside-sr", 1)


async def test_without_the_password_nothing_is_allowed(acl_redis: str) -> None:
    """The default user is off: a client without credentials, or with a wrong password, gets
    nothing."""
    anonymous = connect(RedisSettings.model_validate({"url": acl_redis}), timeout_s=2.0)
    try:
        with pytest.raises(AuthenticationError):
            await anonymous.get("sr:epoch")
    finally:
        await anonymous.aclose()
    wrong = connect(
        RedisSettings.model_validate(
            {"url": acl_redis, "username": "streamrec", "password": "guess"}
        ),
        timeout_s=2.0,
    )
    try:
        with pytest.raises(AuthenticationError):
            await wrong.ping()
    finally:
        await wrong.aclose()
