"""The fault suite's load driver and its exactly-once checks.

``Load`` runs in the background while a fault happens: writers POST events through ingest
(single events and small batches, each with its own ``event_id``), retrying a refused or
unanswered request with the same ids as a shop's client would, and recording every id that got
a 202; readers ask the recommender for the writers' users all the time, recording every answer
that is not a 200 (status 0: no answer at all, a transport error).

``settled`` then checks what the system must hold after the fault and its recovery: every 202'd
event once in the trainer's archive (Postgres) and once in the processor's per-user counters.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from streamrec_dev.localstack import demo
from streamrec_dev.localstack.stack import SERVICES, LocalStack, StackDescription
from streamrec_shared.profile import ProfileReader

from ..archive import archived_ids
from ..polling import eventually, now


@dataclass
class ShopStack:
    """A private stack of the fault suite, with its shop's product ids."""

    stack: LocalStack
    desc: StackDescription
    products: list[str]


@contextmanager
def shop_stack(
    root: Path, *, n_users: int, n_products: int, events_per_user: int, durable_broker: bool = False
) -> Iterator[ShopStack]:
    """A private stack (kills never touch the session's) with every service ready, a small
    demo shop and an active model; stopped on exit."""
    stack = LocalStack(root, durable_broker=durable_broker, triggers=False)
    desc = stack.start()
    try:
        for name in SERVICES:
            stack.wait_ready(name, timeout=120)
        shop = demo.load_sync(
            desc, n_users=n_users, n_products=n_products, events_per_user=events_per_user
        )
        assert shop["job"]["status"] == "published", shop["job"]
        yield ShopStack(stack, desc, [f"p{i:06d}" for i in range(n_products)])
    finally:
        stack.stop()


WRITERS = 2
READERS = 2
PAUSE_S = 0.02  # between a worker's requests: ~100 events/s and ~100 reads/s in all
USERS = 40
RETRY_FOR_S = 60.0  # how long a writer retries one request after the load was told to stop


@dataclass
class Miss:
    """An answer of the recommender that was not a 200."""

    at: float
    status: int  # 0: no answer (connection refused or reset, timeout)
    detail: str


@dataclass
class Load:
    desc: StackDescription
    tag: str
    products: list[str]
    acked: dict[str, str] = field(default_factory=dict)
    """event_id -> user_id of every event answered 202."""
    unanswered: dict[str, str] = field(default_factory=dict)
    """Events still refused when the load stopped (the broker may hold them or not)."""
    refusals: Counter[int] = field(default_factory=Counter)
    """Status -> count of refused POST attempts (each later retried)."""
    reads: int = 0
    misses: list[Miss] = field(default_factory=list)
    error: str | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _n: int = 0

    def user(self, n: int) -> str:
        return f"{self.tag}-u{n % USERS}"

    def _events(self) -> list[dict[str, Any]]:
        """One event, or every fifth time a batch of three."""
        out = []
        for _ in range(3 if self._n % 5 == 4 else 1):
            n = self._n = self._n + 1
            out.append(
                {
                    "event_id": f"{self.tag}-e{n}",
                    "user_id": self.user(n * 7),
                    "event_type": ("view", "click", "add_to_cart", "purchase")[n % 4],
                    "product_id": self.products[n % len(self.products)],
                }
            )
        return out

    async def _writer(self, http: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            batch = self._events()
            deadline = None
            while True:
                try:
                    body = {"events": batch} if len(batch) > 1 else batch[0]
                    r = await http.post("/v1/events", json=body)
                    status = r.status_code
                except httpx.HTTPError:
                    status = 0
                if status == 202:
                    self.acked.update((e["event_id"], e["user_id"]) for e in batch)
                    break
                if 400 <= status < 500 and status != 429:  # the driver's own mistake
                    self.error = f"ingest refused the load's request: {r.text[:300]}"
                    raise AssertionError(self.error)
                self.refusals[status] += 1
                if self._stop.is_set():
                    deadline = deadline or time.monotonic() + RETRY_FOR_S
                    if time.monotonic() > deadline:
                        self.unanswered.update((e["event_id"], e["user_id"]) for e in batch)
                        break
                await asyncio.sleep(0.2)  # a client's back-off before the retry
            await asyncio.sleep(PAUSE_S)

    async def _reader(self, http: httpx.AsyncClient, w: int) -> None:
        n = w
        while not self._stop.is_set():
            n += 1
            params = {"k": "5"}
            if n % 3 == 0:
                params["context"] = self.products[n % len(self.products)]
            try:
                r = await http.get(f"/v1/recommendations/{self.user(n)}", params=params)
                if r.status_code != 200:
                    self.misses.append(Miss(time.monotonic(), r.status_code, r.text[:200]))
            except httpx.HTTPError as exc:
                self.misses.append(Miss(time.monotonic(), 0, repr(exc)))
            self.reads += 1
            await asyncio.sleep(PAUSE_S)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Load]:
        """Run the load for the body of the ``async with``; on leaving, writers finish the
        request they are retrying (bounded) and stop."""
        key = {"X-API-Key": self.desc.api_keys["writer"]}
        # a fresh connection per request: a killed process's pooled connections would otherwise
        # count as its failures long after it is back
        limits = httpx.Limits(max_keepalive_connections=0)
        async with (
            httpx.AsyncClient(
                base_url=self.desc.urls["ingest"], headers=key, timeout=10, limits=limits
            ) as writes,
            httpx.AsyncClient(
                base_url=self.desc.urls["recommender"], timeout=10, limits=limits
            ) as reads,
        ):
            tasks = [asyncio.create_task(self._writer(writes)) for _ in range(WRITERS)]
            tasks += [asyncio.create_task(self._reader(reads, w)) for w in range(READERS)]
            try:
                yield self
            finally:
                self._stop.set()
                await asyncio.gather(*tasks)

    async def progress(self, more: int, *, timeout: float = 60, what: str = "") -> None:
        """Wait until ``more`` further events were acknowledged (the load is flowing)."""
        target = len(self.acked) + more

        def arrived() -> bool:
            assert self.error is None, self.error
            return len(self.acked) >= target

        await eventually(
            now(arrived),
            timeout=timeout,
            what=what or f"{more} more acknowledged events",
            interval=0.05,
        )

    def expected_counts(self) -> dict[str, int]:
        counts: Counter[str] = Counter(self.acked.values())
        return {self.user(n): counts[self.user(n)] for n in range(USERS)}


async def profile_counts(redis: Redis, users: list[str]) -> dict[str, int]:
    got = await ProfileReader(redis).get_profiles(users)
    return {u: (got[u].event_count if u in got else 0) for u in users}


async def settled(load: Load, *, timeout: float = 90) -> None:
    """Every 202'd event of ``load`` is archived once and counted once in its user's profile.

    Events still unanswered when the load stopped may or may not have reached the broker: none
    is left in the suite's runs (asserted), so the counts are exact."""
    assert load.acked, "the load acknowledged nothing"
    assert not load.unanswered, f"{len(load.unanswered)} events never acknowledged"
    ids = list(load.acked)
    archived = await eventually(
        lambda: archived_ids(load.desc.postgres_dsn, ids),
        lambda found: len(found) == len(ids),
        timeout=timeout,
        what="every acknowledged event in the archive",
        interval=0.5,
    )
    assert set(archived.values()) == {1}, "an event archived twice"
    want = load.expected_counts()
    redis = Redis.from_url(load.desc.redis_url)
    try:
        got = await eventually(
            lambda: profile_counts(redis, list(want)),
            lambda counts: counts == want,
            timeout=timeout,
            what="every acknowledged event counted in the profiles",
            interval=0.5,
        )
        assert got == want
    finally:
        await redis.aclose()
    print(
        f"\n{load.tag}: {len(load.acked)} events acknowledged (refused attempts, retried: "
        f"{dict(load.refusals)}), all archived once and counted once; {load.reads} reads, "
        f"not 200: {[(m.status, m.detail[:60]) for m in load.misses]}"
    )
