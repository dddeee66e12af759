"""Read-your-writes: push accepted events to their user's recent-events list before the 202.

See ``streamrec_shared.recent_events`` for the list and why it exists. ``RecentWriter.remember``
is awaited after the broker acknowledged a request's events; the pushes of every request that
got there in the same event-loop turn go to Redis as one pipeline (under load the producer's
acknowledgements complete many requests at once, so most requests share a round trip). Per
user: LPUSH of its entries (oldest first, so the newest ends up at the head), LTRIM to
``MAX_EVENTS``, EXPIRE ``TTL_S`` and DEL of its result cache (``sr:rc:<user>``: an answer
cached before this event must not be served after the 202), on one lean pipelined connection
(``streamrec_shared.resp``: redis-py's asyncio pipeline cost ~4x the CPU per push).

A Redis failure never fails the request: the event is in Kafka and the profile will have it
shortly; the push is skipped, logged, and ``streamrec_dependency_up{service="ingest",
dependency="redis"}`` set to 0 (1 again after the next push that works). After a failure Redis
is left alone for ``backoff_s`` (a dead Redis costs nothing per request instead of a timeout).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence

from redis.exceptions import RedisError

from streamrec_shared import metrics, recent_events
from streamrec_shared.events import EventIn
from streamrec_shared.profile import rec_cache_key
from streamrec_shared.resp import Command, RespConnection
from streamrec_shared.settings import RedisSettings

logger = logging.getLogger(__name__)

_REDIS_UP = metrics.DEPENDENCY_UP.labels("ingest", "redis")

Entries = list[tuple[str, bytes]]
"""(user id, encoded entry) in acceptance order."""


class RecentWriter:
    """Coalesces the recent-events pushes of concurrent requests into one Redis pipeline."""

    def __init__(self, redis: RespConnection, *, backoff_s: float = 1.0) -> None:
        self.redis = redis
        self.backoff_s = backoff_s
        self._pending: Entries = []
        self._waiters: list[asyncio.Future[None]] = []
        self._scheduled = False
        self._down_until = 0.0

    @classmethod
    def connect(cls, settings: RedisSettings) -> RecentWriter:
        redis = RespConnection(
            settings.url.get_secret_value(),
            timeout_s=settings.socket_timeout_s,
            connect_timeout_s=settings.connect_timeout_s,
        )
        return cls(redis)

    async def close(self) -> None:
        self.redis.close()

    async def remember(self, events: Sequence[EventIn], received_ts: float) -> None:
        """Push ``events`` (accepted) to their users' lists; returns when Redis answered, or at
        once when it is known to be down. Never raises for Redis' sake."""
        entries = [
            (e.user_id, recent_events.encode(
                e.product_id, e.event_type,
                e.timestamp.timestamp() if e.timestamp is not None else received_ts,
            ))
            for e in events
            if e.event_type in recent_events.INTERACTIONS
        ]  # fmt: skip
        if not entries:
            return
        if time.monotonic() < self._down_until:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._pending.extend(entries)
        self._waiters.append(waiter)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        await waiter

    def _flush(self) -> None:
        entries, waiters = self._pending, self._waiters
        self._pending, self._waiters, self._scheduled = [], [], False
        task = asyncio.get_running_loop().create_task(self._write(entries))
        task.add_done_callback(lambda _t: _release(waiters))

    async def _write(self, entries: Entries) -> None:
        by_user: dict[str, list[bytes]] = defaultdict(list)
        for user_id, entry in entries:
            by_user[user_id].append(entry)
        commands: list[Command] = []
        for user_id, values in by_user.items():
            key = recent_events.recent_events_key(user_id)
            commands += [
                ("LPUSH", key, *values),
                ("LTRIM", key, 0, recent_events.MAX_EVENTS - 1),
                ("EXPIRE", key, recent_events.TTL_S),
                ("DEL", rec_cache_key(user_id)),
            ]
        try:
            await self.redis.execute(*commands)
        except (RedisError, OSError, TimeoutError) as exc:
            self._down_until = time.monotonic() + self.backoff_s
            _REDIS_UP.set(0)
            logger.warning("recent-events write skipped (%d events): %s", len(entries), exc)
        else:
            _REDIS_UP.set(1)


def _release(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


WRITER: RecentWriter | None = None
"""The app's writer while its lifespan runs (``start``/``stop``); None: nothing is pushed."""


def start(settings: RedisSettings) -> RecentWriter:
    global WRITER
    WRITER = RecentWriter.connect(settings)
    return WRITER


async def stop() -> None:
    global WRITER
    writer, WRITER = WRITER, None
    if writer is not None:
        await writer.close()


async def remember(events: Sequence[EventIn], received_ts: float) -> None:
    """``WRITER.remember`` when the app runs one (the events route's one call)."""
    if WRITER is not None:
        await WRITER.remember(events, received_ts)
