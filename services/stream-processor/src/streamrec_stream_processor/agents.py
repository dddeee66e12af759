"""The faust agents and timers: thin loops that hand records to the updaters.

``events.v1`` -> ``EventUpdater`` (profiles, trending, cache invalidation);
``catalog.v1`` -> ``CatalogUpdater``; ``users.v1`` -> ``UserUpdater``. Each agent takes up to
``batch_max`` records or what arrived within ``batch_within_s``; faust acknowledges a batch
(offsets become committable) only after the loop body returned, i.e. after Redis has it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, cast

from aiokafka.errors import IllegalStateError
from faust import Stream
from faust.types import TP, AppT, EventT, StreamT, TopicT

from streamrec_shared import metrics
from streamrec_stream_processor.updater import DeadLetter, Record

logger = logging.getLogger(__name__)

Apply = Callable[[Sequence[Record]], Awaitable[None]]


def to_record(event: EventT[bytes]) -> Record:
    """A faust ``EventT`` (raw key/value serializers) as a ``Record``."""
    msg = event.message
    value = msg.value
    return Record(
        topic=str(msg.topic),
        partition=int(msg.partition),
        offset=int(msg.offset),
        key=msg.key if isinstance(msg.key, bytes | None) else str(msg.key).encode(),
        value=value if isinstance(value, bytes | None) else str(value).encode(),
    )


async def consume(
    stream: Stream[bytes],
    apply: Apply,
    dead_letter: DeadLetter,
    lag: LagTracker,
    *,
    batch_max: int,
    batch_within_s: float,
) -> None:
    """The body of every agent: batches in, ``apply`` each; never lets an error out.

    ``apply`` retries transient Redis failures itself. Anything else raised for a batch is a
    bug or a poison batch: its records are dead-lettered so the partition keeps moving.
    """
    async for batch in stream.take_events(batch_max, batch_within_s):
        records = [to_record(e) for e in batch]
        try:
            await apply(records)
        except Exception as exc:  # loop boundary: the worker never stops on a bad batch
            logger.exception("batch of %d records from %s failed", len(records), records[0].topic)
            for rec in records:
                await dead_letter(rec, "processing_error", repr(exc)[:1000])
        lag.processed(records)


def register(
    app: AppT,
    *,
    channels: dict[str, TopicT],
    appliers: dict[str, Apply],
    dead_letter: DeadLetter,
    lag: LagTracker,
    batch_max: int,
    batch_within_s: float,
) -> None:
    """Define one agent per consumed topic (``channels``: name -> faust topic)."""

    def make(apply: Apply) -> Callable[[StreamT[Any]], Coroutine[Any, Any, None]]:
        async def agent(stream: StreamT[Any]) -> None:
            await consume(
                cast("Stream[bytes]", stream),
                apply,
                dead_letter,
                lag,
                batch_max=batch_max,
                batch_within_s=batch_within_s,
            )

        return agent

    for name, channel in channels.items():
        agent = make(appliers[name])
        agent.__name__ = agent.__qualname__ = f"{name}_agent"
        app.agent(channel, name=name, concurrency=1)(agent)


class LagTracker:
    """The consumer-lag gauge: highwater minus the next offset to process, per partition.

    ``processed`` updates the partitions of a batch right after it was applied; ``report`` (a
    timer) sweeps every assigned partition, also idle ones, and drops revoked ones.
    """

    def __init__(self, app: AppT) -> None:
        self.app = app
        self.positions: dict[tuple[str, int], int] = {}
        self._reported: set[tuple[str, int]] = set()

    def _highwater(self, tp: TP) -> int | None:
        try:
            high: int | None = self.app.consumer.highwater(tp)
        except (AssertionError, AttributeError, KeyError):  # not assigned (any more)
            return None
        return high

    def processed(self, records: Sequence[Record]) -> None:
        done: dict[tuple[str, int], int] = {}
        for rec in records:
            done[(rec.topic, rec.partition)] = rec.offset + 1
        for key, pos in done.items():
            self.positions[key] = pos
            high = self._highwater(TP(key[0], key[1]))
            if high is not None:
                metrics.PROCESSOR_CONSUMER_LAG.labels(key[0], str(key[1])).set(max(0, high - pos))
                self._reported.add(key)

    async def report(self, *_app: object) -> None:
        """Timer body (faust passes the app in, as its wrapper takes ``*args``)."""
        consumer = self.app.consumer
        current: set[tuple[str, int]] = set()
        for tp in consumer.assignment():
            key = (str(tp.topic), int(tp.partition))
            high = self._highwater(tp)
            pos = self.positions.get(key)
            if pos is None:
                try:
                    pos = await consumer.position(tp)
                except IllegalStateError:  # revoked by a rebalance since assignment() listed it
                    continue
            if high is None or pos is None:
                continue
            metrics.PROCESSOR_CONSUMER_LAG.labels(key[0], str(key[1])).set(max(0, high - pos))
            current.add(key)
        for gone in self._reported - current:
            self.positions.pop(gone, None)
            with contextlib.suppress(KeyError):
                metrics.PROCESSOR_CONSUMER_LAG.remove(gone[0], str(gone[1]))
        self._reported = current
