"""faust's aiokafka transport with a configurable fetch wait and a cheaper delivery loop.

faust hard-codes ``fetch_max_wait_ms=1500`` for its worker consumer. A broker that answers a
fetch only when that wait expires (the local Tansu broker does, rather than as soon as new data
arrives) then adds up to 1.5 s to every event's freshness. ``ProcessorApp`` builds its
transport from these subclasses, which set aiokafka's fetch wait from
``ProcessorTuning.fetch_max_wait_ms`` (and ``fetch_min_bytes``) on the consumer before it starts.

faust's fetcher loop (``Consumer._drain_messages``) hands each fetched message to the conductor
inside ``Service.wait_first(callback(message), suspend_flow.wait())``: four tasks and an
``asyncio.wait`` per message (measured: ~9% of the worker's CPU per event).
``_Consumer`` runs the same per-message steps for a whole fetched batch inside one
``wait_first``, so a rebalance (``suspend_flow``) still interrupts delivery at any message;
the messages not delivered yet are dropped and re-read after the seek to the committed
offsets, as with faust's loop. Its fetches also wait at most ``FETCH_TIMEOUT_S`` instead of
1 s: when a backlog fills the stream buffer, faust stops fetching those partitions until the
agent has drained it, and a fetch that meanwhile waited a full second on the idle catalog and
users partitions left the worker without events for up to that second (about a fifth of the
time under load). Everything else is faust's own code.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar, cast

import aiokafka
import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, ConsumerT, Message, TransportT
from mode import Service, ServiceT

logger = logging.getLogger(__name__)

YIELD_EVERY = 100
"""Messages delivered between yields to the event loop (faust's value)."""
FETCH_TIMEOUT_S = 0.1
"""Longest a fetch waits for records (faust: 1 s; see ``_Consumer._drain_messages``)."""


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_consumer(self, loop: asyncio.AbstractEventLoop) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_consumer(loop)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        min_bytes = getattr(self.app, "fetch_min_bytes", None)
        # aiokafka reads these attributes when start() creates its fetcher.
        if wait_ms is not None:
            consumer._fetch_max_wait_ms = int(wait_ms)
        if min_bytes is not None:
            consumer._fetch_min_bytes = int(min_bytes)
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        """faust's fetcher loop, with one ``wait_first`` per fetched batch (module doc)."""
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = cast("Service", fetcher)._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                ait = self.getmany(timeout=FETCH_TIMEOUT_S)
                # faust's loop sleeps here too: getmany may return at once, again and again
                await self.sleep(0)
                if not self.should_stop:
                    # getmany stops early itself when the flow stops or the generation changes
                    batch = [item async for item in ait]
                    if batch:
                        await self.wait_first(self._deliver(batch), self.suspend_flow.wait())
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                logger.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                logger.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception:
            logger.exception("Drain messages raised")
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _deliver(self, batch: list[tuple[TP, Message]]) -> None:
        """The per-message body of faust's loop: gap tracking, periodic commit, delivery."""
        callback = self.callback
        read_offset = self._read_offset
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        for i, (tp, message) in enumerate(batch, 1):
            if i % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            offset = message.offset
            r_offset = read_offset[tp]
            if r_offset is not None and offset < r_offset:
                continue  # already read (faust drops these the same way)
            if offset - (r_offset or 0) > 1 and r_offset and acks_enabled_for(message.topic):
                await self._add_gap(tp, r_offset + 1, offset)
            if commit_every is not None and self._n_acked >= commit_every:
                self._n_acked = 0
                await self.commit()
            await callback(message)
            read_offset[tp] = offset


class _Transport(faust_aiokafka.Transport):
    Consumer: ClassVar[type[ConsumerT]] = _Consumer


class ProcessorApp(faust.App):
    """A ``faust.App`` whose Kafka consumer uses ``fetch_max_wait_ms`` and ``fetch_min_bytes``."""

    def __init__(
        self, id: str, *, fetch_max_wait_ms: int, fetch_min_bytes: int = 1, **options: Any
    ) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.fetch_min_bytes = fetch_min_bytes
        super().__init__(id, **options)

    def _new_transport(self) -> TransportT:
        return _Transport(self.conf.broker_consumer, self)
