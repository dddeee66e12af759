"""Fakes for the ingest unit tests: a producer that acks, fails or hangs on demand."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from pydantic import SecretStr

from streamrec_ingest.publisher import Batch
from streamrec_ingest.settings import IngestOptions, IngestSettings
from streamrec_shared.settings import (
    ApiKey,
    AuthSettings,
    HttpSettings,
    KafkaSettings,
    PostgresSettings,
    RedisSettings,
    hash_key,
)

KEYS = {"admin": "k-admin", "writer": "k-writer", "catalog": "k-catalog", "reader": "k-reader"}


@dataclass
class Sent:
    topic: str
    key: bytes
    value: bytes
    partition: int


@dataclass
class FakeProducer:
    """Acks every record (``mode="ok"``), fails them (``"error"``) or never acks (``"hang"``)."""

    mode: str = "ok"
    sent: list[Sent] = field(default_factory=list)
    fail_starts: int = 0
    partitions: int = 6
    batch_capacity: int = 1000
    batches: int = 0
    starts: int = 0
    stopped: bool = False
    pending: list[asyncio.Future[Any]] = field(default_factory=list)

    async def start(self) -> None:
        self.starts += 1
        if self.fail_starts > 0:
            self.fail_starts -= 1
            raise KafkaConnectionError("broker not there")

    async def stop(self) -> None:
        self.stopped = True
        for fut in self.pending:
            if not fut.done():
                fut.set_exception(KafkaTimeoutError())

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    async def send(
        self, topic: str, value: bytes, key: bytes, partition: int
    ) -> asyncio.Future[Any]:
        batch = FakeBatch(1)
        batch.append(timestamp=None, key=key, value=value)
        return await self.send_batch(batch, topic, partition=partition)

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.batch_capacity)

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        assert isinstance(batch, FakeBatch)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.batches += 1
        if self.mode == "ok":
            self.sent.extend(Sent(topic, k, v, partition) for k, v in batch.records)
            fut.set_result(None)
        elif self.mode == "error":
            fut.set_exception(KafkaTimeoutError())
        else:
            self.pending.append(fut)
        return fut


@dataclass
class FakeBatch:
    """Holds up to ``capacity`` records, as a size-bounded batch builder does."""

    capacity: int
    records: list[tuple[bytes, bytes]] = field(default_factory=list)

    closed: bool = False

    def append(self, *, timestamp: int | None, key: bytes, value: bytes) -> object | None:
        if self.closed or len(self.records) >= self.capacity:
            return None
        self.records.append((key, value))
        return len(self.records)

    def close(self) -> None:
        self.closed = True


def unit_settings(**ingest: Any) -> IngestSettings:
    """Settings with four keys; Postgres on a closed port (the event path never needs it), Redis
    too (the read-your-writes push is skipped, never failing a request)."""
    keys = [
        ApiKey(name="admin", sha256=hash_key(KEYS["admin"]), scopes=["admin"]),
        ApiKey(
            name="writer",
            sha256=hash_key(KEYS["writer"]),
            scopes=["events:write"],
            rate_per_s=5.0,
            burst=5.0,
        ),
        ApiKey(name="catalog", sha256=hash_key(KEYS["catalog"]), scopes=["catalog:write"]),
        ApiKey(name="reader", sha256=hash_key(KEYS["reader"]), scopes=[]),
    ]
    return IngestSettings(
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1", create_topics=False),
        postgres=PostgresSettings(dsn="postgresql://nobody@127.0.0.1:1/none", migrate=False),
        redis=RedisSettings(url=SecretStr("redis://127.0.0.1:1/0")),
        auth=AuthSettings(api_keys=keys),
        http=HttpSettings(max_body_bytes=64 * 1024, cors_origins=["https://shop.example"]),
        ingest=IngestOptions(
            publish_timeout_s=0.3, retry_after_s=2.0, order_reconcile_interval_s=0, **ingest
        ),
    )
