"""The one way streamrec consumes Kafka: fetch a batch, make its effects durable, then commit.

Every consume/commit loop runs on ``StreamConsumer``: the stream processor (``events.v1``,
``catalog.v1``, ``users.v1`` -> Redis profiles, catalog state, attribution counters) and the
trainer's archive (``events.v1`` -> Postgres). aiokafka's at-least-once recipe:

- Auto-commit is off. A batch is what ``getmany`` has ready (or, with ``linger_ms``, what
  arrives that long after the first records), split by topic and handed to that topic's
  handler. A handler returns once every effect of its records is durable (acknowledged by
  Redis or Postgres) or the record is dead-lettered; only then do the batch's offsets become
  committable. Effects must be idempotent: a crash between the effect and the commit replays
  the batch (profiles skip replayed offsets and event ids, the archive inserts
  ``ON CONFLICT (event_id) DO NOTHING``, attribution counts an event id once).
- Offsets are committed at most every ``commit_interval_s`` (0: after every batch), always
  before a rebalance revokes partitions, and when the consumer stops.
- A handler error of a ``retryable`` type (Redis or Postgres unreachable) retries the same
  records after a backoff, offsets untouched. Any other error is a poison batch: with a
  ``dead_letter`` sink, each of its records goes to the dead-letter topic with reason
  ``processing_error`` (and the sink's metric), so the partition keeps moving; without one
  the consumer restarts from the committed offsets.
- Rebalance safety: handling a batch and the revocation callback share a lock, so a
  revocation waits until the batch in hand is durable, commits it, and only then lets the group
  move the partitions. A batch fetched before a revocation but not yet handled is dropped: the
  new owner (possibly this consumer again) reads it from the committed offset.

- A tail reader (``group_id=None``: the recommender's ``catalog.v1`` feed) runs the same loop
  without a group: every process reads every partition from ``auto_offset_reset`` and commits
  nothing (its effects are in-memory state rebuilt from the topic at each start).
- State guard (optional, ``StateGuard``): where the effects live in a store that can lose them
  (the processor's Redis), the guard is asked before each batch (and every second when idle)
  which assigned partitions its store has not yet seen from their beginning; those are sought
  to their first offset, that offset committed, and the guard told, so a lost store is rebuilt
  by replaying the topics. A handler error of the guard's ``lost`` types (the store noticed the
  loss mid-batch) drops the batch unhandled and rewinds its partitions to its first records.

Consumer lag (highwater minus the next offset to handle) goes to a ``LagGauge`` per partition,
after each batch for its partitions and every ``lag_interval_s`` for all assigned ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from prometheus_client import Counter, Gauge
from pydantic import Field

from streamrec_shared import kafka, topics
from streamrec_shared.settings import Group, KafkaSettings
from streamrec_shared.tasks import cancel

logger = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0


@dataclass(frozen=True, slots=True)
class Record:
    """A consumed Kafka record as handlers see it (raw key and value bytes)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    """The record's Kafka timestamp (producer create time or log append time), ms since epoch."""


Handler = Callable[[Sequence[Record]], Awaitable[None]]
"""Records of one topic, in offset order per partition; returns when their effects are durable."""

DeadLetter = Callable[[Record, str, str], Awaitable[None]]
"""``(record, reason, error text)``: publish to the dead-letter topic and count it."""


class StateGuard(Protocol):
    """Tells a consumer which partitions its effects' store must see again from the start."""

    lost: tuple[type[BaseException], ...]
    """Handler errors meaning "the store lost its state under this batch"."""

    async def stale(self, assigned: set[TopicPartition]) -> set[TopicPartition]:
        """The assigned partitions the store has not replayed since it was (re)created."""
        ...

    async def rewound(self, partitions: set[TopicPartition]) -> None:
        """``partitions`` were sought to their beginning (and that offset committed)."""
        ...


GUARD_IDLE_S = 1.0
"""How often an idle consumer asks its guard (a busy one asks before every batch)."""


class ConsumerSettings(Group):
    """Knobs of one ``StreamConsumer`` (each service sets its own defaults)."""

    # None: a tail reader, not a group member: every process reads every partition from
    # auto_offset_reset on each start and commits nothing (for a compacted topic that each
    # process needs whole, like the recommender's catalog.v1 feed).
    group_id: str | None
    max_batch: int = Field(default=500, ge=1, le=100_000)
    # Longest a getmany waits when nothing is buffered (the loop then commits and sweeps lag).
    poll_timeout_ms: int = Field(default=200, ge=1, le=10_000)
    # Once a batch has its first records, keep fetching this long (or to max_batch).
    linger_ms: int = Field(default=0, ge=0, le=5000)
    # Each fetch asks the broker for this many bytes, waiting at most fetch_max_wait_ms.
    fetch_min_bytes: int = Field(default=1, ge=1)
    fetch_max_wait_ms: int = Field(default=500, ge=1, le=10_000)
    commit_interval_s: float = Field(default=0.0, ge=0)
    lag_interval_s: float = Field(default=5.0, gt=0)
    auto_offset_reset: str = "earliest"


@dataclass(frozen=True)
class LagGauge:
    """A per-partition lag gauge and how a partition becomes its label values."""

    gauge: Gauge
    labels: Callable[[TopicPartition], tuple[str, ...]]

    @staticmethod
    def by_topic_partition(gauge: Gauge) -> LagGauge:
        return LagGauge(gauge, lambda tp: (tp.topic, str(tp.partition)))

    @staticmethod
    def by_partition(gauge: Gauge) -> LagGauge:
        return LagGauge(gauge, lambda tp: (str(tp.partition),))

    def set(self, tp: TopicPartition, lag: int) -> None:
        self.gauge.labels(*self.labels(tp)).set(max(0, lag))

    def remove(self, tp: TopicPartition) -> None:
        with contextlib.suppress(KeyError):
            self.gauge.remove(*self.labels(tp))


class DeadLetterPublisher:
    """Publishes poison records to ``events.dlq.v1`` (headers name the source) and counts them.

    ``counter`` has the labels ``(topic, reason)``; the producer is the caller's, started.
    """

    def __init__(
        self, producer: AIOKafkaProducer, counter: Counter, *, topic: str = topics.DEAD_LETTER
    ) -> None:
        self.producer = producer
        self.counter = counter
        self.topic = topic

    async def __call__(self, rec: Record, reason: str, error: str) -> None:
        headers = [
            ("source_topic", rec.topic.encode()),
            ("source_partition", str(rec.partition).encode()),
            ("source_offset", str(rec.offset).encode()),
            ("reason", reason.encode()),
            ("error", error.encode(errors="replace")),
        ]
        await self.producer.send_and_wait(
            self.topic, key=rec.key, value=rec.value or b"", headers=headers
        )
        self.counter.labels(rec.topic, reason).inc()
        logger.warning(
            "dead-lettered %s[%d]@%d: %s (%s)", rec.topic, rec.partition, rec.offset, reason, error
        )


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: StreamConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.owner._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        logger.info("%s: assigned %s", self.owner.name, sorted(assigned))


class StreamConsumer:
    """One consumer-group member (or, without a group, a tail reader) running ``handlers``
    (topic -> handler) until cancelled.

    ``run()`` is the loop (start it as a task; cancel it, or call ``stop()``, to leave the
    group after committing what was handled). ``handlers`` run in their mapping's order within
    a batch. ``retryable``: handler errors that mean "try the same records again later".
    """

    def __init__(
        self,
        kafka_settings: KafkaSettings,
        settings: ConsumerSettings,
        handlers: Mapping[str, Handler],
        *,
        dead_letter: DeadLetter | None = None,
        retryable: tuple[type[BaseException], ...] = (),
        lag: LagGauge | None = None,
        on_degraded: Callable[[BaseException], None] | None = None,
        guard: StateGuard | None = None,
    ) -> None:
        self.kafka_settings = kafka_settings
        self.settings = settings
        self.handlers = dict(handlers)
        self.dead_letter = dead_letter
        self.retryable = retryable
        self.lag = lag
        self.on_degraded = on_degraded
        self.name = settings.group_id or "tail:" + ",".join(self.handlers)
        """The group, or ``tail:<topics>`` for a tail reader (logs, task name)."""
        self.guard = guard
        self._lost: tuple[type[BaseException], ...] = guard.lost if guard is not None else ()
        self._guard_due = 0.0
        self.consumer: AIOKafkaConsumer | None = None
        self.healthy = False
        self._lock = asyncio.Lock()
        self._generation = 0
        self._pending: dict[TopicPartition, int] = {}  # handled, not yet committed: next offset
        self._positions: dict[TopicPartition, int] = {}  # next offset to handle, for lag
        self._reported: set[TopicPartition] = set()
        self._commit_due = 0.0
        self._lag_due = 0.0
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        """Run the loop as a task of the current event loop."""
        self._task = asyncio.create_task(self.run(), name=f"consume:{self.name}")
        return self._task

    async def stop(self) -> None:
        """Cancel the loop; it commits the handled offsets and leaves the group."""
        await cancel(self._task)
        self._task = None

    def assignment(self) -> set[TopicPartition]:
        """The partitions this member owns now (empty before the first assignment)."""
        if self.consumer is None:
            return set()
        try:
            assigned: set[TopicPartition] = self.consumer.assignment()
        except (IllegalStateError, AttributeError):
            return set()
        return assigned

    async def run(self) -> None:
        """Forever: (re)connect, fetch, handle, commit. Errors are logged and retried."""
        failures = 0
        while True:
            consumer = kafka.consumer(
                self.kafka_settings,
                group_id=self.settings.group_id,
                auto_offset_reset=self.settings.auto_offset_reset,
                max_poll_records=self.settings.max_batch,
                fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
                fetch_min_bytes=self.settings.fetch_min_bytes,
            )
            consumer.subscribe(list(self.handlers), listener=_Rebalance(self))
            self.consumer = consumer
            try:
                await consumer.start()
                self.healthy = True
                failures = 0
                while True:
                    await self._step(consumer)
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError) as exc:
                failures += 1
                self._degraded(exc)
                if failures == 1 or failures % 30 == 0:
                    logger.warning(
                        "%s: consumer failed %d times (%s); restarting",
                        self.name,
                        failures,
                        exc,
                    )
            except Exception as exc:  # loop boundary: restart from the committed offsets
                failures += 1
                self._degraded(exc)
                logger.exception("%s: consumer loop crashed; restarting", self.name)
            finally:
                self.healthy = False
                await self._close(consumer)
            await asyncio.sleep(min(MAX_BACKOFF_S, 0.5 * failures))

    async def _close(self, consumer: AIOKafkaConsumer) -> None:
        """Commit what was handled (its effects are durable), then leave the group."""
        async with self._lock:
            with contextlib.suppress(KafkaError, OSError, IllegalStateError):
                await asyncio.wait_for(self._commit(consumer), timeout=5.0)
            self._pending.clear()
            self._generation += 1
        with contextlib.suppress(KafkaError, OSError):
            await consumer.stop()
        for tp in self._reported:
            if self.lag is not None:
                self.lag.remove(tp)
        self._reported.clear()
        self._positions.clear()

    # --- one batch ---------------------------------------------------------------------------
    async def _fetch(self, consumer: AIOKafkaConsumer) -> list[Record]:
        s = self.settings
        fetched = await consumer.getmany(timeout_ms=s.poll_timeout_ms, max_records=s.max_batch)
        records = [_record(m) for messages in fetched.values() for m in messages]
        if not records or s.linger_ms <= 0:
            return records
        deadline = time.monotonic() + s.linger_ms / 1000.0
        while len(records) < s.max_batch:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                break
            more = await consumer.getmany(
                timeout_ms=left_ms, max_records=s.max_batch - len(records)
            )
            records.extend(_record(m) for messages in more.values() for m in messages)
        return records

    async def _step(self, consumer: AIOKafkaConsumer) -> None:
        records = await self._fetch(consumer)
        generation = self._generation  # read before any await: see the module doc
        async with self._lock:
            guard = self.guard
            if (
                guard is not None
                and generation == self._generation
                and (records or time.monotonic() >= self._guard_due)
            ):
                self._guard_due = time.monotonic() + GUARD_IDLE_S
                records = await self._rewind_stale(consumer, guard, records)
            if records and generation == self._generation:
                try:
                    await self._handle(records)
                except self._lost as exc:
                    logger.warning(
                        "%s: the store lost its state under a batch (%s); rewinding",
                        self.name,
                        exc,
                    )
                    self._guard_due = 0.0
                    self._seek_to_first(consumer, records)
                    return
                for rec in records:
                    tp = TopicPartition(rec.topic, rec.partition)
                    if self.settings.group_id is not None:  # a tail reader commits nothing
                        self._pending[tp] = rec.offset + 1
                    self._positions[tp] = rec.offset + 1
                self._report_lag(consumer, {TopicPartition(r.topic, r.partition) for r in records})
            now = time.monotonic()
            if self._pending and now >= self._commit_due:
                self._commit_due = now + self.settings.commit_interval_s
                await self._commit(consumer)
        if time.monotonic() >= self._lag_due:
            self._lag_due = time.monotonic() + self.settings.lag_interval_s
            await self._sweep_lag(consumer)

    async def _rewind_stale(
        self, consumer: AIOKafkaConsumer, guard: StateGuard, records: list[Record]
    ) -> list[Record]:
        """Seek the partitions the guard calls stale to their beginning and commit that;
        returns the records of the others (call with the lock held)."""
        attempt = 0
        while True:
            try:
                stale = await guard.stale(set(consumer.assignment()))
                break
            except self.retryable as exc:  # the store is away: wait for it, as handlers do
                self._degraded(exc)
                await asyncio.sleep(min(MAX_BACKOFF_S, 0.05 * 2**attempt))
                attempt += 1
        if not stale:
            return records
        starts: dict[TopicPartition, int] = await consumer.beginning_offsets(list(stale))
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
            self._pending.pop(tp, None)
            self._positions[tp] = offset
        await consumer.commit(starts)
        await guard.rewound(stale)
        logger.warning(
            "%s: replaying %d partitions from their beginning into a new store state: %s",
            self.name,
            len(stale),
            sorted(f"{tp.topic}:{tp.partition}" for tp in stale),
        )
        return [r for r in records if TopicPartition(r.topic, r.partition) not in stale]

    def _seek_to_first(self, consumer: AIOKafkaConsumer, records: list[Record]) -> None:
        """Fetch ``records`` again: each partition back to its first record of the batch."""
        first: dict[TopicPartition, int] = {}
        for rec in records:
            tp = TopicPartition(rec.topic, rec.partition)
            first[tp] = min(first.get(tp, rec.offset), rec.offset)
        for tp, offset in first.items():
            consumer.seek(tp, offset)
            self._pending.pop(tp, None)

    async def _handle(self, records: list[Record]) -> None:
        by_topic: dict[str, list[Record]] = {}
        for rec in records:
            by_topic.setdefault(rec.topic, []).append(rec)
        for topic, handler in self.handlers.items():
            batch = by_topic.get(topic)
            if batch:
                await self._handle_topic(handler, batch)

    async def _handle_topic(self, handler: Handler, batch: list[Record]) -> None:
        attempt = 0
        while True:
            try:
                await handler(batch)
                return
            except self.retryable as exc:
                delay = min(MAX_BACKOFF_S, 0.05 * 2**attempt)
                attempt += 1
                self._degraded(exc)
                logger.warning(
                    "%s: batch of %d %s records failed (%s: %s); retrying in %.2fs",
                    self.name,
                    len(batch),
                    batch[0].topic,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
            except self._lost:
                raise  # not the records' fault: ``_step`` rewinds them
            except Exception as exc:
                if self.dead_letter is None:
                    raise
                # loop boundary: a poison batch must not stop the partition
                logger.exception(
                    "%s: batch of %d %s records failed; dead-lettering it",
                    self.name,
                    len(batch),
                    batch[0].topic,
                )
                for rec in batch:
                    await self.dead_letter(rec, "processing_error", repr(exc)[:1000])
                return

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        """Commit the handled offsets (call with the lock held)."""
        if not self._pending:
            return
        offsets, self._pending = self._pending, {}
        assigned = consumer.assignment()
        offsets = {tp: off for tp, off in offsets.items() if tp in assigned}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # the partitions moved in a rebalance: their new owner replays from the last
            # commit, and the effects are idempotent
            logger.info("%s: offset commit skipped after a rebalance (%s)", self.name, exc)

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._lock:  # waits for the batch in hand to be durable
            consumer = self.consumer
            if consumer is not None:
                with contextlib.suppress(KafkaError, OSError):
                    await self._commit(consumer)
            self._pending.clear()
            self._generation += 1
            for tp in revoked:
                self._positions.pop(tp, None)
        if revoked:
            logger.info("%s: revoked %s", self.name, sorted(revoked))

    def _degraded(self, exc: BaseException) -> None:
        if self.on_degraded is not None:
            self.on_degraded(exc)

    # --- lag ---------------------------------------------------------------------------------
    def _report_lag(self, consumer: AIOKafkaConsumer, tps: set[TopicPartition]) -> None:
        if self.lag is None:
            return
        for tp in tps:
            high = _highwater(consumer, tp)
            if high is not None:
                self.lag.set(tp, high - self._positions[tp])
                self._reported.add(tp)

    async def _sweep_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Every assigned partition, idle ones too; drops the gauges of revoked ones."""
        if self.lag is None:
            return
        assigned = consumer.assignment()
        current: set[TopicPartition] = set()
        unknown = [tp for tp in assigned if _highwater(consumer, tp) is None]
        ends: dict[TopicPartition, int] = {}
        if unknown:
            with contextlib.suppress(KafkaError, OSError, IllegalStateError):
                ends = await consumer.end_offsets(unknown)
        for tp in assigned:
            high = _highwater(consumer, tp)
            if high is None:
                high = ends.get(tp)
            pos = self._positions.get(tp)
            if pos is None:
                try:
                    pos = await consumer.position(tp)
                except IllegalStateError:  # revoked since assignment() listed it
                    continue
            if high is None or pos is None:
                continue
            self.lag.set(tp, high - pos)
            current.add(tp)
        for gone in self._reported - current:
            self._positions.pop(gone, None)
            self.lag.remove(gone)
        self._reported = current


def _record(m: object) -> Record:
    timestamp = getattr(m, "timestamp", None)
    return Record(m.topic, m.partition, m.offset, m.key, m.value, timestamp)  # type: ignore[attr-defined]


def _highwater(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    try:
        high: int | None = consumer.highwater(tp)
    except (IllegalStateError, AssertionError, KeyError):
        return None
    return high
