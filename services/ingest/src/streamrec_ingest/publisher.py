"""Hand records to the Kafka producer and wait, within a bound, until the broker acked them all.

The producer is ``acks=all`` (and idempotent where the broker supports it, a setting). A call to
:meth:`Publisher.publish` returns only when every record of the call is acknowledged; if that
does not happen within ``publish_timeout_s`` (broker down, slow, topic missing) it raises
``RetryableError`` (503 + Retry-After). Records handed over before a timeout may still reach the
log later: that is why event_ids are fixed before publishing and kept on every retry path, and
downstream consumers count each event_id once.

If the broker is unreachable when the service starts, the producer is started in the background
and requests get 503 until it is up; after that aiokafka reconnects by itself when the broker
comes back, so the service recovers without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from aiokafka.errors import KafkaError
from pydantic import BaseModel

from streamrec_shared import metrics
from streamrec_shared.errors import RetryableError
from streamrec_shared.events import encode

logger = logging.getLogger(__name__)

Record = tuple[bytes | None, bytes]
"""(key, value) of one Kafka record."""


class Producer(Protocol):
    """The part of ``aiokafka.AIOKafkaProducer`` the publisher uses (fakes implement it too)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> asyncio.Future[Any]: ...


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a late failure as seen (the request already got its 503)."""
    if not future.cancelled():
        future.exception()


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
        while True:
            await asyncio.sleep(self.start_retry_s)
            if await self._try_start():
                return

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
        futures: list[asyncio.Future[Any]] = []
        try:
            async with asyncio.timeout(self.timeout_s):
                for key, value in records:
                    future = await producer.send(topic, value, key=key)
                    future.add_done_callback(_retrieve)
                    futures.append(future)
                await asyncio.gather(*futures)
        except TimeoutError:
            self._replace_if_dead(producer)
            raise self._unavailable(f"no acknowledgement within {self.timeout_s:g} s") from None
        except KafkaError as exc:
            self._replace_if_dead(producer)
            raise self._unavailable(type(exc).__name__) from None
        metrics.INGEST_PUBLISH_DURATION.labels(topic).observe(time.perf_counter() - started)

    def _replace_if_dead(self, producer: Producer) -> None:
        """aiokafka reconnects by itself; only a producer whose sender task ended is replaced."""
        sender = getattr(producer, "_sender", None)
        task = getattr(sender, "sender_task", None)
        if task is None or not task.done() or self._producer is not producer:
            return
        logger.error("the producer's sender stopped; starting a new producer")
        self._producer = None

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
        if self._starter is not None:
            self._starter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._starter
        if self._producer is not None:
            with contextlib.suppress(KafkaError, OSError):
                await self._producer.stop()
            self._producer = None


def keyed(records: Sequence[BaseModel], key_field: str) -> list[Record]:
    """(key, value) pairs: the key is the record's ``key_field`` (user_id, product_id)."""
    return [(str(getattr(r, key_field)).encode(), encode(r)) for r in records]
