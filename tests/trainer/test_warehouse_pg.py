"""``warehouse.load_interactions`` against a real Postgres (started for this module): the binary
COPY of integer-coded rows gives exactly the events the archive holds in the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import pytest

from streamrec_shared.events import EVENT_TYPES, UserEvent
from streamrec_trainer import warehouse
from streamrec_trainer.archive import archive_events
from streamrec_trainer.dataset import Interactions
from streamrec_trainer.warehouse import Window, data_window, load_interactions

pytestmark = pytest.mark.slow

T0 = datetime(2011, 1, 4, 10, 0, tzinfo=UTC)
# ids whose byte order, code-point order and a linguistic collation disagree
USERS = ("u1", "U2", "ü3", "u10", "Z", "a", "😀", "ab")
PRODUCTS = ("p1", "P1", "p-2", "é", "p10")


def _events(n: int) -> list[UserEvent]:
    rng = np.random.default_rng(9)
    out = []
    for k in range(n):
        kind = EVENT_TYPES[int(rng.integers(len(EVENT_TYPES)))]
        value = float(rng.integers(1, 6)) if kind in ("rating", "purchase") else None
        ts = T0 + timedelta(seconds=float(rng.uniform(0, 20 * 86_400)))
        out.append(
            UserEvent(
                event_id=f"w{k}",
                user_id=USERS[int(rng.integers(len(USERS)))],
                product_id=PRODUCTS[int(rng.integers(len(PRODUCTS)))],
                event_type=kind,
                timestamp=ts,
                received_at=ts,
                value=value,
            )
        )
    return out


async def test_load_interactions_matches_the_archive(pool: asyncpg.Pool) -> None:
    events = _events(3000)
    assert await archive_events(pool, events) == len(events)
    await pool.execute("INSERT INTO users (user_id) VALUES ('never-active')")
    window = await data_window(pool, 365)
    assert window is not None
    loaded = await load_interactions(pool, window)
    assert len(loaded) == len(events)
    got = sorted(
        zip(
            loaded.user_ids.tolist(),
            loaded.item_ids.tolist(),
            loaded.event_types.tolist(),
            np.nan_to_num(loaded.values, nan=-1.0).tolist(),
            loaded.timestamps.tolist(),
            strict=True,
        )
    )
    want = sorted(
        (e.user_id, e.product_id, e.event_type, -1.0 if e.value is None else e.value,
         e.timestamp.timestamp())
        for e in events
    )  # fmt: skip
    assert got == want
    assert loaded.distinct_users().tolist() == sorted(set(USERS))

    # the window bounds event time (both ends inclusive)
    middle = T0 + timedelta(days=10)
    part = await load_interactions(pool, Window(start=T0, end=middle))
    assert len(part) == sum(e.timestamp <= middle for e in events)
    assert part.timestamps.max() <= middle.timestamp()


async def test_a_hash_collision_falls_back_to_coding_ids_in_sql(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    await archive_events(pool, _events(500))
    window = await data_window(pool, 365)
    assert window is not None
    hashed = await load_interactions(pool, window)

    def collide(hashes: object) -> object:
        raise warehouse.HashCollision("simulated")

    monkeypatch.setattr(warehouse, "hash_lookup", collide)
    joined = await load_interactions(pool, window)
    assert len(joined) == len(hashed) > 0

    def rows(log: Interactions) -> list[tuple[str, str, str, float]]:
        return sorted(
            zip(
                log.user_ids.tolist(),
                log.item_ids.tolist(),
                log.event_types.tolist(),
                log.timestamps.tolist(),
                strict=True,
            )
        )

    assert rows(joined) == rows(hashed)


async def test_empty_window(pool: asyncpg.Pool) -> None:
    far = datetime(1999, 1, 1, tzinfo=UTC)
    empty = await load_interactions(pool, Window(start=far, end=far + timedelta(days=1)))
    assert len(empty) == 0
    assert empty.user_codes.dtype == np.int32


async def test_one_far_future_event_does_not_move_the_window(pool: asyncpg.Pool) -> None:
    """Issue 17 finding 2: the window was anchored at the newest event time, so one event
    stamped in year 2990 made the window [2990 - 30 days, 2990]: nothing of the shop's data."""
    events = _events(1000)
    received = max(e.timestamp for e in events)
    outlier = UserEvent(
        event_id="far-future",
        user_id="u1",
        product_id="p1",
        event_type="view",
        timestamp=datetime(2990, 1, 1, tzinfo=UTC),
        received_at=received,
    )
    assert await archive_events(pool, [*events, outlier]) == len(events) + 1
    window = await data_window(pool, 30)
    assert window is not None
    assert window.end == received
    loaded = await load_interactions(pool, window)
    assert len(loaded) == len(events)
    assert loaded.timestamps.max() == received.timestamp()


async def test_erased_users_are_never_loaded(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17 finding 13: events of an erased user archived after the erasure (in flight in
    Kafka when it happened) are skipped, by the hashed and by the joined load alike."""
    events = _events(1000)
    await archive_events(pool, events)
    await pool.execute("INSERT INTO erased_users (user_id) VALUES ('u1'), ('😀')")
    window = await data_window(pool, 365)
    assert window is not None
    kept = [e for e in events if e.user_id not in ("u1", "😀")]
    hashed = await load_interactions(pool, window)
    assert len(hashed) == len(kept)
    assert {"u1", "😀"}.isdisjoint(hashed.user_vocab.tolist())

    def collide(hashes: object) -> object:
        raise warehouse.HashCollision("simulated")

    monkeypatch.setattr(warehouse, "hash_lookup", collide)
    joined = await load_interactions(pool, window)
    assert sorted(joined.user_ids.tolist()) == sorted(e.user_id for e in kept)
