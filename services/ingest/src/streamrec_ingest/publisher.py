"""Hand records to the Kafka producer and wait, within a bound, until the broker acked them all.

The producer is ``acks=all`` (and idempotent where the broker supports it, a setting). A call to
:meth:`Publisher.publish` returns only when every record of the call is acknowledged; if that
does not happen within ``publish_timeout_s`` (broker down, slow, topic missing) it raises
``RetryableError`` (503 + Retry-After). Records handed over before a timeout may still reach the
log later: that is why event_ids are fixed before publishing and kept on every retry path, and
downstream consumers count each event_id once.

Records of a call with more than a few are handed to the producer as one batch per partition
(``create_batch`` / ``send_batch``), not one ``send()`` each: per record that is an append to a
buffer instead of a coroutine, a partition lookup and a future. Calls publishing at the same time
share those batches: while the producer holds a partition's batch back (lingering, or the
previous one still in flight), the next one keeps filling, as aiokafka's own accumulator does
for ``send()`` (which may add to the same batch). Keys go to the partition aiokafka's default
partitioner would choose (see :func:`murmur2`).

If the broker is unreachable when the service starts, the producer is started in the background
and requests get 503 until it is up; after that aiokafka reconnects by itself when the broker
comes back, so the service recovers without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from aiokafka.errors import KafkaError
from prometheus_client import Histogram
from pydantic import BaseModel

from streamrec_shared import metrics
from streamrec_shared.errors import RetryableError
from streamrec_shared.events import encode
from streamrec_shared.tasks import cancel, retry_every

logger = logging.getLogger(__name__)

Record = tuple[bytes, bytes]
"""(key, value) of one Kafka record."""

DIRECT_MAX = 4
"""Calls with up to this many records ``send()`` each: cheaper than a batch of their own."""


class Batch(Protocol):
    """The part of aiokafka's ``BatchBuilder`` the publisher uses."""

    def append(self, *, timestamp: int | None, key: bytes, value: bytes) -> object | None:
        """Add a record (``timestamp`` None: now); None when the batch is full or closed."""

    def close(self) -> None:
        """No more records: the producer sends a closed batch without lingering."""


class Producer(Protocol):
    """The part of ``aiokafka.AIOKafkaProducer`` the publisher uses (fakes implement it too)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def partitions_for(self, topic: str) -> set[int]: ...

    async def send(
        self, topic: str, value: bytes, key: bytes, partition: int
    ) -> asyncio.Future[Any]: ...

    def create_batch(self) -> Batch: ...

    async def send_batch(
        self, batch: Batch, topic: str, *, partition: int
    ) -> asyncio.Future[Any]: ...


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a late failure as seen (the request already got its 503)."""
    if not future.cancelled():
        future.exception()


class _Pending:
    """A batch for one partition, filling; ``acked`` settles when the broker acknowledged it."""

    __slots__ = ("acked", "batch")

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        self.acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # requests that timed out no longer wait for it: its failure is seen here
        self.acked.add_done_callback(_retrieve)

    def fail(self, exc: KafkaError) -> None:
        if not self.acked.done():
            self.acked.set_exception(exc)

    def settle(self, delivery: asyncio.Future[Any]) -> None:
        """``delivery``: the producer's future for the batch."""
        if self.acked.done():
            return
        if delivery.cancelled():
            self.acked.set_exception(KafkaError("batch delivery cancelled"))
        elif (exc := delivery.exception()) is not None:
            self.acked.set_exception(exc)
        else:
            self.acked.set_result(None)


_M = 0x5BD1E995
_WORDS = struct.Struct("<I").iter_unpack


def murmur2(key: bytes) -> int:
    """The Java client's murmur2 of a record key (as aiokafka's default partitioner computes it).

    Every producer of a keyed topic must map a key to the same partition (a user's events stay
    in order on one partition): this gives the same hash as ``aiokafka.partitioner.murmur2``,
    with the key read four bytes at a time instead of one.
    """
    length = len(key)
    h = 0x9747B28C ^ length
    whole = length & ~3
    for (k,) in _WORDS(key[:whole]):
        k = (k * _M) & 0xFFFFFFFF
        k = ((k ^ (k >> 24)) * _M) & 0xFFFFFFFF
        h = ((h * _M) & 0xFFFFFFFF) ^ k
    rest = length & 3
    if rest:
        if rest == 3:
            h ^= key[whole + 2] << 16
        if rest >= 2:
            h ^= key[whole + 1] << 8
        h = ((h ^ key[whole]) * _M) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * _M) & 0xFFFFFFFF
    return h ^ (h >> 15)


class Publisher:
    """Publishes batches of records and waits for the broker's acknowledgement of all of them.

    ``factory`` builds a fresh producer (a failed ``start()`` leaves an aiokafka producer
    unusable); ``before_start`` runs before each start attempt (topic creation).
    """

    def __init__(
        self,
        factory: Callable[[], Producer],
        *,
        timeout_s: float,
        retry_after_s: float,
        start_retry_s: float = 1.0,
        before_start: Callable[[], Awaitable[None]] | None = None,
        check_timeout_s: float = 1.0,
    ) -> None:
        self._factory = factory
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self.start_retry_s = start_retry_s
        self.check_timeout_s = check_timeout_s
        self._before_start = before_start
        self._producer: Producer | None = None
        self._starter: asyncio.Task[None] | None = None
        self._durations: dict[str, Histogram] = {}
        # (topic, partition) -> batches filling for the current producer, oldest first
        self._queues: dict[tuple[str, int], deque[_Pending]] = {}
        self._handing: set[asyncio.Task[None]] = set()

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        """Try once now; if the broker is not there, keep trying in the background."""
        if await self._try_start():
            return
        self._starter = asyncio.create_task(self._keep_starting(), name="producer-start")

    async def _try_start(self) -> bool:
        producer = self._factory()
        try:
            async with asyncio.timeout(max(self.timeout_s, 5.0)):
                if self._before_start is not None:
                    await self._before_start()
                await producer.start()
        except (KafkaError, OSError, TimeoutError) as exc:
            logger.warning("producer start failed (%s); requests get 503 until it starts", exc)
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await producer.stop()
            return False
        self._producer = producer
        logger.info("producer started")
        return True

    async def _keep_starting(self) -> None:
        await retry_every(self.start_retry_s, self._try_start)

    def _unavailable(self, reason: str) -> RetryableError:
        return RetryableError(
            f"broker unavailable: {reason}; the request was not accepted, retry it with the "
            "same event_ids (an event that arrives twice is counted once)",
            retry_after=self.retry_after_s,
        )

    async def publish(self, topic: str, records: Sequence[Record]) -> None:
        """Send ``records`` to ``topic``; return once the broker acknowledged every one.

        Raises ``RetryableError`` when that does not happen within ``timeout_s``.
        """
        producer = self._producer
        if producer is None:
            raise self._unavailable("the producer is not connected yet")
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s):
                partitions = sorted(await producer.partitions_for(topic))
                n = len(partitions)
                # each key where aiokafka's default partitioner would put it
                placed = [(partitions[(murmur2(k) & 0x7FFFFFFF) % n], k, v) for k, v in records]
                if len(placed) <= DIRECT_MAX:
                    await self._send_each(producer, topic, placed)
                else:
                    await self._send_batched(producer, topic, placed)
        except TimeoutError:
            self._replace_if_dead(producer)
            raise self._unavailable(f"no acknowledgement within {self.timeout_s:g} s") from None
        except KafkaError as exc:
            self._replace_if_dead(producer)
            raise self._unavailable(type(exc).__name__) from None
        self._publish_duration(topic).observe(time.perf_counter() - started)

    @staticmethod
    async def _send_each(
        producer: Producer, topic: str, placed: Sequence[tuple[int, bytes, bytes]]
    ) -> None:
        futures = []
        for partition, key, value in placed:
            future = await producer.send(topic, value, key=key, partition=partition)
            future.add_done_callback(_retrieve)  # a late failure after a 503 is seen
            futures.append(future)
        for future in futures:
            await future

    async def _send_batched(
        self, producer: Producer, topic: str, placed: Sequence[tuple[int, bytes, bytes]]
    ) -> None:
        acks = {self._append(producer, topic, p, key, value) for p, key, value in placed}
        for acked in acks:
            # shared with other requests: a timeout here must not cancel it for them
            await asyncio.shield(acked)

    def _append(
        self, producer: Producer, topic: str, partition: int, key: bytes, value: bytes
    ) -> asyncio.Future[None]:
        """Add a record to the partition's filling batch; the future settles when it is acked."""
        slot = (topic, partition)
        queue = self._queues.get(slot)
        if queue is None:
            queue = self._queues[slot] = deque()
            task = asyncio.create_task(self._hand_over(producer, topic, partition, queue))
            self._handing.add(task)
            task.add_done_callback(self._handing.discard)
        if queue and queue[-1].batch.append(timestamp=None, key=key, value=value) is not None:
            return queue[-1].acked
        pending = _Pending(producer.create_batch())  # none filling, or the last one is full
        if pending.batch.append(timestamp=None, key=key, value=value) is None:
            raise KafkaError("a record larger than a whole batch")
        queue.append(pending)
        return pending.acked

    async def _hand_over(
        self, producer: Producer, topic: str, partition: int, queue: deque[_Pending]
    ) -> None:
        """Hand the partition's batches to ``producer`` in order, until none is left filling.

        ``send_batch`` waits while the producer still holds the partition's previous batch;
        meanwhile records of other requests fill the next one. A batch is closed as it is handed
        over: it then goes out as soon as the partition is free, without the producer's linger,
        which is there to gather the records of single-event requests (``send()``).
        """
        while queue:
            pending = queue.popleft()
            pending.batch.close()
            try:
                delivery = await producer.send_batch(pending.batch, topic, partition=partition)
            except KafkaError as exc:
                pending.fail(exc)
            except Exception as exc:
                logger.exception("handing a batch to the producer failed")
                pending.fail(KafkaError(repr(exc)))
            else:
                delivery.add_done_callback(pending.settle)
        if self._queues.get((topic, partition)) is queue:
            del self._queues[(topic, partition)]

    def _publish_duration(self, topic: str) -> Histogram:
        child = self._durations.get(topic)
        if child is None:
            child = self._durations[topic] = metrics.INGEST_PUBLISH_DURATION.labels(topic)
        return child

    def _replace_if_dead(self, producer: Producer) -> None:
        """aiokafka reconnects by itself; only a producer whose sender task ended is replaced."""
        sender = getattr(producer, "_sender", None)
        task = getattr(sender, "sender_task", None)
        if task is None or not task.done() or self._producer is not producer:
            return
        logger.error("the producer's sender stopped; starting a new producer")
        self._producer = None
        self._queues = {}  # what the old producer was given fails with it

        async def replace() -> None:
            with contextlib.suppress(KafkaError, OSError):
                await producer.stop()
            if not await self._try_start():
                await self._keep_starting()

        self._starter = asyncio.create_task(replace(), name="producer-replace")

    async def reachable(self) -> bool:
        """A metadata round trip to the broker succeeds (for /readyz)."""
        producer = self._producer
        if producer is None:
            return False
        client = getattr(producer, "client", None)
        if client is None:
            return True
        try:
            async with asyncio.timeout(self.check_timeout_s):
                cluster = await client.fetch_all_metadata()
        except (KafkaError, OSError, TimeoutError):
            return False
        return bool(cluster.brokers())

    async def close(self) -> None:
        """Stop retrying, flush what is pending, close the producer."""
        await cancel(self._starter)
        if self._producer is not None:
            with contextlib.suppress(KafkaError, OSError):
                await self._producer.stop()
            self._producer = None
        for task in list(self._handing):  # batches the stopped producer can no longer take
            task.cancel()


def keyed(records: Sequence[BaseModel], key_field: str) -> list[Record]:
    """(key, value) pairs: the key is the record's ``key_field`` (user_id, product_id)."""
    return [(str(getattr(r, key_field)).encode(), encode(r)) for r in records]
