"""One batch of records in, Redis state out: decode, compute (``profiles``), write (``store``).

The consumer (``streamrec_shared.consumer``) hands raw records here. Poison records go to the
dead-letter topic; Redis failures are retried with backoff until they succeed (the batch's
offsets are not committed meanwhile, so a crash replays it, and the exactly-once checks in
``profiles.apply_events`` skip what was already applied).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from prometheus_client import Counter
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streamrec_shared import metrics
from streamrec_shared.consumer import DeadLetter, Record
from streamrec_shared.events import (
    ProductRecord,
    UserErased,
    UserEvent,
    decode_event,
    decode_user_update,
    unstorable,
)
from streamrec_shared.profile import (
    CATEGORY_DICT,
    PRODUCT_DICT,
    REV_PREFIX_BYTES,
    CatalogState,
    PackedProfile,
    decode_catalog_state,
    decode_profile,
    encode_catalog_state,
    encode_profile,
    encode_user_attributes,
    event_digest,
)
from streamrec_stream_processor.foldin import ModelHandle
from streamrec_stream_processor.profiles import (
    EventFacts,
    ProfileConfig,
    apply_events,
    facts,
    fold_vectors,
    with_vector,
)
from streamrec_stream_processor.store import (
    CatalogWrite,
    ProfileWrite,
    RedisStore,
    TrendIncrement,
)

logger = logging.getLogger(__name__)

RETRYABLE = (RedisConnectionError, RedisTimeoutError, OSError)
MAX_BACKOFF_S = 5.0
MAX_CONFLICT_ROUNDS = 20


__all__ = [
    "CatalogUpdater",
    "DeadLetter",
    "EventUpdater",
    "Record",
    "UserUpdater",
    "until_redis_takes",
]


@dataclass(slots=True)
class _Pending:
    """One user's decoded events of the batch, in partition order."""

    user_id: str
    events: list[tuple[Record, UserEvent]]


async def _retrying(what: str, attempt: int, exc: BaseException) -> None:
    delay = min(MAX_BACKOFF_S, 0.05 * 2**attempt)
    logger.warning("%s failed (%s: %s); retrying in %.2fs", what, type(exc).__name__, exc, delay)
    metrics.DEPENDENCY_UP.labels("stream-processor", "redis").set(0)
    await asyncio.sleep(delay)


async def until_redis_takes(what: str, write: Callable[[], Awaitable[object]]) -> None:
    """Run ``write`` until it goes through, backing off (and reporting Redis down) while Redis
    is away: a batch waits rather than being committed with its effects missing."""
    attempt = 0
    while True:
        try:
            await write()
            return
        except RETRYABLE as exc:
            await _retrying(what, attempt, exc)
            attempt += 1


class EventUpdater:
    """Applies batches of ``events.v1`` records to user profiles and trending sets."""

    def __init__(
        self,
        store: RedisStore,
        models: ModelHandle,
        config: ProfileConfig,
        dead_letter: DeadLetter,
        *,
        max_future_skew_s: float = 300.0,
    ) -> None:
        self.store = store
        self.models = models
        self.config = config
        self.dead_letter = dead_letter
        self.max_future_skew_s = max_future_skew_s
        self._counters: dict[tuple[str, str], Counter] = {}

    async def apply(self, batch: Sequence[Record]) -> list[UserEvent]:
        """Apply one batch; returns when every record is in Redis or dead-lettered.

        Returns the decoded events of the batch (in batch order) for later stages.
        """
        started = time.monotonic()
        pending: dict[str, _Pending] = {}
        decoded: list[UserEvent] = []
        for rec in batch:
            if rec.value is None:
                await self.dead_letter(rec, "empty", "record without value")
                continue
            try:
                event = decode_event(rec.value)
            except ValidationError as exc:
                await self.dead_letter(rec, "invalid", str(exc)[:1000])
                continue
            why = unstorable(event)
            if why is not None:  # the archive dead-letters it too: counted by neither
                await self.dead_letter(rec, "unstorable", why)
                continue
            decoded.append(event)
            pending.setdefault(event.user_id, _Pending(event.user_id, [])).events.append(
                (rec, event)
            )
        attempt = 0
        rounds = 0
        while pending:
            try:
                pending = await self._round(pending)
                attempt = 0
                rounds += 1
                if pending and rounds >= MAX_CONFLICT_ROUNDS:
                    logger.warning("%d users still conflicting; backing off", len(pending))
                    await asyncio.sleep(0.1)
                    rounds = 0
            except RETRYABLE as exc:
                await _retrying("profile update", attempt, exc)
                attempt += 1
        metrics.DEPENDENCY_UP.labels("stream-processor", "redis").set(1)
        elapsed = time.monotonic() - started
        observe = metrics.PROCESSOR_DURATION.observe
        for _ in range(len(batch)):
            observe(elapsed)
        return decoded

    async def _round(self, pending: dict[str, _Pending]) -> dict[str, _Pending]:
        """Read, compute and compare-and-set every pending user; returns the conflicting ones."""
        model = self.models.current  # one snapshot per round: a vector never mixes versions
        users = list(pending)
        product_ids = list({e.product_id for p in pending.values() for _, e in p.events})
        digests = [list({event_digest(e.event_id) for _, e in pending[u].events}) for u in users]
        raw_profiles, raw_catalog, known_ids = await self.store.read(users, product_ids, digests)
        categories: dict[str, str] = {}
        undescribed: list[str] = []
        for pid, raw in zip(product_ids, raw_catalog, strict=True):
            if raw is not None:
                categories[pid] = decode_catalog_state(raw).category
            else:
                undescribed.append(pid)
        # the events count (profiles, trending) but no answer shows an undescribed product
        await self.store.hold_undescribed(undescribed)
        product_codes = await self.store.intern(PRODUCT_DICT, product_ids)
        category_codes = await self.store.intern(CATEGORY_DICT, set(categories.values()))

        writes: list[ProfileWrite] = []
        updated: list[PackedProfile] = []
        applied_by_user: list[tuple[_Pending, tuple[EventFacts, ...]]] = []
        for user_id, raw, known in zip(users, raw_profiles, known_ids, strict=True):
            p = pending[user_id]
            try:
                old = self._decode(user_id, raw)
                event_facts = [
                    facts(
                        e,
                        product_codes[e.product_id],
                        category_codes.get(categories.get(e.product_id, ""), -1),
                        rec.partition,
                        rec.offset,
                    )
                    for rec, e in p.events
                ]
                update = apply_events(old, event_facts, self.config, known)
            except Exception as exc:  # a bug in the maths must not stop the worker
                logger.exception("profile update of user %s failed", user_id)
                for rec, _ in p.events:
                    await self.dead_letter(rec, "processing_error", repr(exc)[:1000])
                continue
            if update.profile is None:
                self._count(p, ())
                continue
            expected = raw[:REV_PREFIX_BYTES] if raw is not None else b""
            updated.append(update.profile)
            writes.append(
                ProfileWrite(
                    user_id,
                    expected,
                    b"",
                    self._trending(p, update.applied, categories),
                    self._event_ids(p, update.applied),
                )
            )
            applied_by_user.append((p, update.applied))

        if model is not None and updated:
            vectors = fold_vectors(model, updated)
            updated = [with_vector(u, model, v) for u, v in zip(updated, vectors, strict=True)]
        writes = [
            ProfileWrite(w.user_id, w.expected, encode_profile(u), w.trending, w.event_ids)
            for w, u in zip(writes, updated, strict=True)
        ]
        results = await self.store.write_profiles(writes)
        now = time.time()
        conflicts: dict[str, _Pending] = {}
        freshness = metrics.PROCESSOR_FRESHNESS.observe
        for ok, (p, applied) in zip(results, applied_by_user, strict=True):
            if not ok:
                conflicts[p.user_id] = p
                continue
            self._count(p, applied)
            positions = {(f.partition, f.offset) for f in applied}
            for rec, e in p.events:
                if (rec.partition, rec.offset) in positions:
                    freshness(max(0.0, now - e.received_at.timestamp()))
        if conflicts:
            logger.info("compare-and-set lost for %d users; re-reading", len(conflicts))
        return conflicts

    @staticmethod
    def _decode(user_id: str, raw: bytes | None) -> PackedProfile | None:
        if raw is None:
            return None
        try:
            return decode_profile(raw)
        except ValueError:
            logger.warning("unreadable profile of user %s is rebuilt from new events", user_id)
            return None

    def _trending(
        self, p: _Pending, applied: tuple[EventFacts, ...], categories: dict[str, str]
    ) -> tuple[TrendIncrement, ...]:
        """The positive events' increments, each at its event time but never later than
        ``max_future_skew_s`` after its receive time nor after its Kafka record's timestamp:
        one record stamped far in the future (from a raw producer or an old ingest; ingest
        refuses it) moves trending's clock no further than that, so it neither decays every
        score away nor pins its product on top."""
        by_position = {(rec.partition, rec.offset): (rec, e) for rec, e in p.events}
        skew = self.max_future_skew_s
        out: list[TrendIncrement] = []
        for f in applied:
            if f.weight <= 0:
                continue
            rec, e = by_position[(f.partition, f.offset)]
            ts = min(f.ts, f.received_at + skew)
            if rec.timestamp_ms is not None and rec.timestamp_ms >= 0:
                ts = min(ts, rec.timestamp_ms / 1000.0 + skew)
            out.append(TrendIncrement(e.product_id, categories.get(e.product_id), f.weight, ts))
        return tuple(out)

    def _event_ids(
        self, p: _Pending, applied: tuple[EventFacts, ...]
    ) -> tuple[tuple[int, float], ...]:
        """(digest, receive time) of the applied events for the user's event-id set, the
        receive time never later than ``max_future_skew_s`` after the Kafka record's timestamp:
        a record with a forged far-future receive time cannot make every user's set look stale
        (``store.event_ids_key``) nor empty its own user's."""
        stamps = {(rec.partition, rec.offset): rec.timestamp_ms for rec, _ in p.events}
        out: list[tuple[int, float]] = []
        for f in applied:
            received = f.received_at
            stamp = stamps[(f.partition, f.offset)]
            if stamp is not None and stamp >= 0:
                received = min(received, stamp / 1000.0 + self.max_future_skew_s)
            out.append((f.digest, received))
        return tuple(out)

    def _count(self, p: _Pending, applied: tuple[EventFacts, ...]) -> None:
        applied_at = {(f.partition, f.offset) for f in applied}
        for rec, e in p.events:
            outcome = "applied" if (rec.partition, rec.offset) in applied_at else "duplicate"
            counter = self._counters.get((e.event_type, outcome))
            if counter is None:
                counter = metrics.PROCESSOR_EVENTS.labels(e.event_type, outcome)
                self._counters[(e.event_type, outcome)] = counter
            counter.inc()


class CatalogUpdater:
    """Applies ``catalog.v1`` records to ``sr:catalog`` / ``sr:unavail``."""

    def __init__(self, store: RedisStore, dead_letter: DeadLetter) -> None:
        self.store = store
        self.dead_letter = dead_letter

    async def apply(self, batch: Sequence[Record]) -> None:
        writes: list[CatalogWrite] = []
        kinds: list[str] = []
        for rec in batch:
            if rec.value is None:  # compaction tombstone: the product is gone
                if rec.key is None:
                    await self.dead_letter(rec, "invalid", "tombstone without key")
                    continue
                pid = rec.key.decode(errors="replace")
                writes.append(CatalogWrite(pid, b"", 0.0, available=False, tombstone=True))
                kinds.append("tombstone")
                continue
            try:
                product = ProductRecord.model_validate_json(rec.value)
            except ValidationError as exc:
                await self.dead_letter(rec, "invalid", str(exc)[:1000])
                continue
            state = CatalogState(
                active=product.active,
                in_stock=product.in_stock,
                category=product.category,
                price=product.price,
                updated_at=product.updated_at.timestamp(),
            )
            writes.append(
                CatalogWrite(
                    product.product_id,
                    encode_catalog_state(state),
                    state.updated_at,
                    available=state.available,
                )
            )
            kinds.append("product" if state.available else "unavailable")
        await until_redis_takes("catalog update", lambda: self.store.write_catalog(writes))
        for kind in kinds:
            metrics.PROCESSOR_CATALOG_UPDATES.labels(kind).inc()


class UserUpdater:
    """Applies ``users.v1`` records: attributes to ``sr:ua:<user_id>``; an erasure
    (``UserErased``) deletes everything Redis holds about the user."""

    def __init__(self, store: RedisStore, dead_letter: DeadLetter) -> None:
        self.store = store
        self.dead_letter = dead_letter

    async def apply(self, batch: Sequence[Record]) -> None:
        writes: list[tuple[str, bytes, float]] = []
        erased: list[str] = []
        written = 0
        for rec in batch:
            if rec.value is None:
                continue  # a compaction tombstone: nothing to forget (attributes are optional)
            try:
                update = decode_user_update(rec.value)
            except ValidationError as exc:
                await self.dead_letter(rec, "invalid", str(exc)[:1000])
                continue
            if isinstance(update, UserErased):
                # in key order: attributes written before the erasure go first, then it wins
                await self._write(writes)
                written, writes = written + len(writes), []
                erased.append(update.user_id)
                await until_redis_takes("user erasure", lambda: self.store.erase_users(erased[-1:]))
                continue
            ts = update.updated_at.timestamp()
            writes.append((update.user_id, encode_user_attributes(update.attributes, ts), ts))
        await self._write(writes)
        metrics.PROCESSOR_CATALOG_UPDATES.labels("user").inc(written + len(writes))
        if erased:
            metrics.PROCESSOR_CATALOG_UPDATES.labels("user_erased").inc(len(erased))

    async def _write(self, writes: list[tuple[str, bytes, float]]) -> None:
        if writes:
            await until_redis_takes(
                "user attributes update", lambda: self.store.write_users(writes)
            )
