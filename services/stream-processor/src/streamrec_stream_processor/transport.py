"""faust's aiokafka transport with a configurable consumer fetch wait.

faust hard-codes ``fetch_max_wait_ms=1500`` for its worker consumer. A broker that answers a
fetch only when that wait expires (the local Tansu broker does, rather than as soon as new data
arrives) then adds up to 1.5 s to every event's freshness. ``ProcessorApp`` builds its
transport from these subclasses, which set aiokafka's fetch wait from
``ProcessorTuning.fetch_max_wait_ms`` on the consumer before it starts. Everything else is
faust's own code.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import ConsumerT, TransportT


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_consumer(self, loop: asyncio.AbstractEventLoop) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_consumer(loop)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            # aiokafka reads this attribute when start() creates its fetcher.
            consumer._fetch_max_wait_ms = int(wait_ms)
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer: ClassVar[type[ConsumerT]] = _Consumer


class ProcessorApp(faust.App):
    """A ``faust.App`` whose Kafka consumer uses ``fetch_max_wait_ms``."""

    def __init__(self, id: str, *, fetch_max_wait_ms: int, **options: Any) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(id, **options)

    def _new_transport(self) -> TransportT:
        return _Transport(self.conf.broker_consumer, self)
