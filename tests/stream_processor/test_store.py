"""The Redis side on a real Redis: Lua scripts, the reader API, and the batch updaters."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from streamrec_shared import topics
from streamrec_shared.artifact_store import open_version
from streamrec_shared.artifacts import AlsArrays, DataWindow, ModelBundle
from streamrec_shared.events import ModelAnnouncement, ProductRecord, UserEvent, UserRecord, encode
from streamrec_shared.profile import (
    CATEGORY_DICT,
    PRODUCT_DICT,
    TRENDING_HELD,
    TRENDING_META,
    UNAVAILABLE_VERSION,
    CodeBook,
    ProfileReader,
    decode_profile,
    profile_key,
    rec_cache_key,
)
from streamrec_shared.settings import RedisSettings
from streamrec_stream_processor import updater as updater_module
from streamrec_stream_processor.foldin import ModelHandle
from streamrec_stream_processor.profiles import ProfileConfig
from streamrec_stream_processor.store import (
    EVENT_IDS_NEWEST,
    ProfileWrite,
    RedisStore,
    TrendIncrement,
    event_ids_key,
)
from streamrec_stream_processor.updater import (
    CatalogUpdater,
    EventUpdater,
    Record,
    UserUpdater,
)

T0 = datetime(2024, 3, 1, tzinfo=UTC)
HOUR = 3600.0


class DeadLetters:
    def __init__(self) -> None:
        self.records: list[tuple[Record, str]] = []

    async def __call__(self, rec: Record, reason: str, error: str) -> None:
        self.records.append((rec, reason))


def event_record(n: int, user: str, kind: str, product: str, at: datetime, **kw: object) -> Record:
    e = UserEvent(
        event_id=str(kw.pop("event_id", f"ev-{n}")),
        user_id=user,
        event_type=kind,
        product_id=product,
        timestamp=at,
        received_at=datetime.now(UTC),
        **kw,
    )
    return Record(topics.EVENTS, 0, n, user.encode(), encode(e))


def product_record(n: int, pid: str, category: str, at: datetime, **kw: object) -> Record:
    p = ProductRecord(product_id=pid, name=pid, category=category, price=9.5, updated_at=at, **kw)
    return Record(topics.CATALOG, 0, n, pid.encode(), encode(p))


async def test_intern_is_dense_and_stable(store: RedisStore, redis: Redis) -> None:
    codes = await store.intern(PRODUCT_DICT, ["a", "b", "a", "c"])
    assert codes == {"a": 0, "b": 1, "c": 2}
    again = await store.intern(PRODUCT_DICT, ["c", "d"])
    assert again == {"c": 2, "d": 3}
    book = CodeBook(redis, PRODUCT_DICT)
    assert await book.names([3, 0, 2]) == ["d", "a", "c"]
    assert await book.names([99]) == [""]


async def test_profile_compare_and_set(store: RedisStore, redis: Redis) -> None:
    await redis.hset(rec_cache_key("u1"), "k10", "cached")
    first = ProfileWrite("u1", b"", b"\xa1\x01\x00\x00\x00rest", ())
    assert await store.write_profiles([first]) == [True]
    assert not await redis.exists(rec_cache_key("u1"))  # the event invalidated the cache
    stale = ProfileWrite("u1", b"", b"\xa1\x02\x00\x00\x00", ())  # expected "absent"
    wrong = ProfileWrite("u1", b"\xa1\x09\x00\x00\x00", b"\xa1\x02\x00\x00\x00", ())
    assert await store.write_profiles([stale, wrong]) == [False, False]
    ok = ProfileWrite("u1", b"\xa1\x01\x00\x00\x00", b"\xa1\x02\x00\x00\x00x", ())
    assert await store.write_profiles([ok]) == [True]
    assert await redis.get(profile_key("u1")) == b"\xa1\x02\x00\x00\x00x"


async def test_trending_forward_decay(store: RedisStore, redis: Redis) -> None:
    t0 = T0.timestamp()
    incs = (
        TrendIncrement("old", "books", 5.0, t0),
        TrendIncrement("new", "books", 2.0, t0 + 48 * HOUR),  # two half-lives later
        TrendIncrement("toy", "toys", 1.0, t0 + 48 * HOUR),
    )
    assert await store.write_profiles([ProfileWrite("tr", b"", b"\xa1xxxx", incs)]) == [True]
    reader = ProfileReader(redis)
    top = await reader.top_trending(10)
    assert [p for p, _ in top] == ["new", "old", "toy"]
    scores = dict(top)
    assert scores["new"] == pytest.approx(2.0)  # valued at the newest event time
    assert scores["old"] == pytest.approx(5.0 / 4)
    assert [p for p, _ in await reader.top_trending(10, "toys")] == ["toy"]
    assert await reader.trending_categories() == {"books", "toys"}
    assert [p for p, _ in await reader.top_trending(10, exclude={"new"})] == ["old", "toy"]
    # a late event adds a smaller increment: order is by decayed weight, not arrival
    late = (TrendIncrement("toy", "toys", 1.0, t0),)
    await store.write_profiles([ProfileWrite("tr2", b"", b"\xa1yyyy", late)])
    assert dict(await reader.top_trending(10))["toy"] == pytest.approx(1.25)


async def test_trending_renormalises_far_in_the_future(store: RedisStore, redis: Redis) -> None:
    t0 = T0.timestamp()
    first = (TrendIncrement("a", "c", 4.0, t0), TrendIncrement("b", "c", 2.0, t0))
    await store.write_profiles([ProfileWrite("r1", b"", b"\xa1zzzz", first)])
    # 300 half-lives later (> RENORMALISE_AT * ln 2): scores are rescaled to a new landmark
    far = t0 + 300 * 24 * HOUR
    later = (TrendIncrement("c", "c", 1.0, far),)
    await store.write_profiles([ProfileWrite("r2", b"", b"\xa1zzzz", later)])
    meta = await redis.hgetall(TRENDING_META)
    assert float(meta[b"landmark"]) == far
    assert int(meta[b"renorms"]) == 1
    top = await ProfileReader(redis).top_trending(5, "c")
    assert [p for p, _ in top] == ["c"]  # 4 * 2**-300 is below the 1e-9 floor: dropped
    assert all(math.isfinite(s) for _, s in top)


async def test_catalog_state_and_unavailable_version(store: RedisStore, redis: Redis) -> None:
    dead = DeadLetters()
    catalog = CatalogUpdater(store, dead)
    reader = ProfileReader(redis)
    assert await reader.unavailable_if_changed(0) is None
    await catalog.apply(
        [
            product_record(0, "p1", "books", T0),
            product_record(1, "p2", "toys", T0, in_stock=False),
            product_record(2, "p3", "toys", T0, active=False),
        ]
    )
    changed = await reader.unavailable_if_changed(0)
    assert changed == (2, frozenset({"p2", "p3"}))
    # an older update of p1 arriving late is ignored; a newer one wins
    await catalog.apply([product_record(3, "p1", "books", T0 - timedelta(hours=1), active=False)])
    assert await reader.unavailable_version() == 2
    await catalog.apply([product_record(4, "p2", "toys", T0 + timedelta(hours=1))])
    assert await reader.unavailable_products() == (3, frozenset({"p3"}))
    # a compaction tombstone deactivates
    await catalog.apply([Record(topics.CATALOG, 0, 5, b"p1", None)])
    assert await reader.unavailable_products() == (4, frozenset({"p1", "p3"}))
    states = await reader.get_products(["p1", "p2", "nope"])
    assert set(states) == {"p1", "p2"}
    assert states["p2"].available
    assert not states["p1"].active
    assert states["p2"].category == "toys"
    # poison
    await catalog.apply([Record(topics.CATALOG, 0, 6, b"x", b"{not json")])
    assert [r for _, r in dead.records] == ["invalid"]
    assert int(await redis.get(UNAVAILABLE_VERSION) or 0) == 4


async def test_events_that_overtake_the_catalog_count_in_its_category(
    store: RedisStore, redis: Redis
) -> None:
    """catalog.v1 and events.v1 are separate streams: a new product's events may be applied
    before its description. They count at once, in ``sr:trend:held`` (out of the lists readers
    page through: the product is unavailable until described); the description moves that score
    into the global list and copies it into the category's list, and an increment computed
    before the description but written after it (its batch read the catalog first) lands in the
    category too. Each change bumps the list's version, which tells readers what to re-read."""
    dead = DeadLetters()
    updater = EventUpdater(store, ModelHandle(store), ProfileConfig(), DeadLetters())
    reader = ProfileReader(redis)
    await updater.apply([event_record(i, f"b{i}", "purchase", "kettle", T0) for i in range(3)])
    held = await redis.zscore(TRENDING_HELD, "kettle")
    assert held is not None
    assert held > 0
    assert await reader.top_trending(10, exclude=set()) == []
    assert "kitchen" not in await reader.trending_categories()
    assert await reader.trending_versions() == {}  # no list a reader sees has changed

    await CatalogUpdater(store, dead).apply([product_record(10, "kettle", "kitchen", T0)])
    assert await redis.zscore(TRENDING_HELD, "kettle") is None
    scores = dict(await reader.top_trending(10))
    in_category = dict(await reader.top_trending(10, "kitchen"))
    assert scores["kettle"] == pytest.approx(in_category["kettle"])
    assert scores["kettle"] > 0
    after = await reader.trending_versions()
    assert (after[None], after["kitchen"]) == (1, 1)

    # written after the description, computed before it: no category in the increment
    inc = (TrendIncrement("kettle", None, 1.0, T0.timestamp()),)
    await store.write_profiles([ProfileWrite("late", b"", b"\xa1late", inc)])
    assert dict(await reader.top_trending(10, "kitchen"))["kettle"] == pytest.approx(
        dict(await reader.top_trending(10))["kettle"]
    )
    assert dict(await reader.top_trending(10))["kettle"] > scores["kettle"]
    final = await reader.trending_versions()
    assert (final[None], final["kitchen"]) == (2, 2)
    # a later description (a price change) copies nothing again
    await CatalogUpdater(store, dead).apply(
        [product_record(11, "kettle", "kitchen", T0 + timedelta(hours=1))]
    )
    assert await reader.trending_versions() == final
    assert not dead.records


async def test_reading_many_trending_lists(store: RedisStore, redis: Redis) -> None:
    """``top_trending_lists`` (the recommender's refresh) gives what ``top_trending`` gives per
    list, over several round trips, and nothing when the unavailable set moved meanwhile."""
    t = T0.timestamp()
    incs = tuple(
        TrendIncrement(f"p{c}-{i}", f"c{c}", float(i + 1), t) for c in range(11) for i in range(3)
    )
    await store.write_profiles([ProfileWrite("many", b"", b"\xa1many", incs)])
    await CatalogUpdater(store, DeadLetters()).apply(
        [product_record(0, "p4-2", "c4", T0, in_stock=False)]
    )
    reader = ProfileReader(redis)
    version, unavailable = await reader.unavailable_products()
    names: list[str | None] = [None, *(f"c{c}" for c in range(11))]
    lists = await reader.top_trending_lists(
        names, k_global=5, k_category=2, exclude=unavailable, exclude_version=version
    )
    assert lists is not None
    assert set(lists) == set(names)
    for name in names:
        k = 5 if name is None else 2
        assert lists[name] == await reader.top_trending(k, name, exclude=unavailable)
    assert [p for p, _ in lists["c4"]] == ["p4-1", "p4-0"]  # p4-2 is out of stock
    stale = await reader.top_trending_lists(
        names, k_global=5, k_category=2, exclude=frozenset(), exclude_version=version - 1
    )
    assert stale is None


async def test_user_attributes(store: RedisStore, redis: Redis) -> None:
    users = UserUpdater(store, DeadLetters())

    def rec(n: int, attrs: dict[str, object], at: datetime) -> Record:
        u = UserRecord(user_id="ua", attributes=attrs, updated_at=at)
        return Record(topics.USERS, 0, n, b"ua", encode(u))

    await users.apply([rec(0, {"country": "NZ"}, T0)])
    await users.apply([rec(1, {"country": "old"}, T0 - timedelta(days=1))])
    assert await ProfileReader(redis).get_user_attributes("ua") == {"country": "NZ"}
    assert await ProfileReader(redis).get_user_attributes("nobody") is None


async def test_event_updater_end_to_end(store: RedisStore, redis: Redis, tmp_path: Path) -> None:
    dead = DeadLetters()
    models = ModelHandle(store)
    await CatalogUpdater(store, dead).apply(
        [product_record(i, f"p{i}", "books" if i % 2 else "toys", T0) for i in range(6)]
    )
    # a model over p0..p3 (p4, p5 are not in it)
    rng = np.random.default_rng(1)
    bundle = ModelBundle(
        version=4,
        created_at=T0,
        data_window=DataWindow.from_timestamps(0, T0.timestamp()),
        als=AlsArrays(
            item_ids=np.asarray([f"p{i}" for i in range(4)]),
            user_ids=np.asarray(["x"]),
            item_factors=rng.standard_normal((4, 8)).astype(np.float32),
            user_factors=np.zeros((1, 8), dtype=np.float32),
            regularization=0.1,
            alpha=2.0,
        ),
    )
    bundle.save(tmp_path / "v4")
    assert open_version((tmp_path / "v4").as_uri()) == tmp_path / "v4"
    await models.load(
        ModelAnnouncement(version=4, artifact_uri=(tmp_path / "v4").as_uri(), activated_at=T0)
    )
    assert models.current is not None
    assert models.current.version == 4
    updater = EventUpdater(store, models, ProfileConfig(), dead)
    batch = [
        event_record(1, "alice", "view", "p1", T0),
        event_record(2, "alice", "purchase", "p2", T0 + timedelta(hours=1)),
        event_record(3, "bob", "view", "p5", T0),
        Record(topics.EVENTS, 0, 4, b"bob", b"not json"),
        event_record(5, "alice", "purchase", "p2", T0, event_id="ev-2"),  # same id again
        event_record(6, "carol", "remove_from_cart", "p1", T0),
    ]
    await updater.apply(batch)
    assert [reason for _, reason in dead.records] == ["invalid"]
    reader = ProfileReader(redis)
    alice = await reader.get_profile("alice")
    assert alice is not None
    assert alice.event_count == 2
    assert alice.items == ("p2", "p1")
    assert alice.purchase_history == ("p2",)
    assert alice.view_history == ("p1",)
    assert set(alice.category_affinity) == {"books", "toys"}
    assert alice.model_version == 4
    assert alice.vector is not None
    assert alice.vector.shape == (8,)
    bob = await reader.get_profile("bob")
    assert bob is not None
    assert bob.vector is None  # p5 is not in the model
    assert bob.model_version is None
    carol = await reader.get_profile("carol")
    assert carol is not None
    assert carol.vector is None  # only a negative weight
    assert carol.counts["remove_from_cart"] == 1
    # redelivery of the whole batch (a crash before the commit) changes nothing
    before = await redis.get(profile_key("alice"))
    await updater.apply(batch)
    assert await redis.get(profile_key("alice")) == before
    assert (await reader.get_vector("alice")) is not None
    # trending counted the positive events once
    top = dict(await reader.top_trending(10))
    assert set(top) == {"p1", "p2", "p5"}
    assert isinstance(before, bytes)
    packed = decode_profile(before)
    assert packed.offset == 5
    assert await CodeBook(redis, CATEGORY_DICT).names(packed.category_codes.tolist())


async def test_profiles_reader_batch(store: RedisStore, redis: Redis) -> None:
    updater = EventUpdater(store, ModelHandle(store), ProfileConfig(), DeadLetters())
    await updater.apply([event_record(i, f"b{i}", "click", "px", T0) for i in range(3)])
    got = await ProfileReader(redis).get_profiles(["b0", "b2", "missing"])
    assert sorted(got) == ["b0", "b2"]
    assert got["b0"].segment == "new"
    assert got["b0"].items == ("px",)


def _sent(
    n: int,
    user: str,
    event_id: str,
    received_at: datetime,
    *,
    kind: str = "view",
    product: str = "p1",
    at: datetime | None = None,
) -> Record:
    """An event record received at ``received_at`` (its event time ``at``, default the same)."""
    e = UserEvent(
        event_id=event_id,
        user_id=user,
        event_type=kind,
        product_id=product,
        timestamp=at or received_at,
        received_at=received_at,
    )
    return Record(topics.EVENTS, 0, n, user.encode(), encode(e))


async def test_a_resent_event_counts_once_after_many_newer_events(
    store: RedisStore, redis: Redis
) -> None:
    """A client re-sends an event (same event id, a new offset) after 20 newer events of the
    user, more than the profile's 16 seen digests: the user's event-id set recognises it."""
    dead = DeadLetters()
    await CatalogUpdater(store, dead).apply([product_record(0, "p1", "books", T0)])
    updater = EventUpdater(store, ModelHandle(store), ProfileConfig(seen_ids=16), dead)
    t = T0
    await updater.apply([_sent(1, "dana", "first", t)])
    for n in range(2, 22):
        await updater.apply([_sent(n, "dana", f"newer-{n}", t + timedelta(seconds=n))])
    await updater.apply([_sent(30, "dana", "first", t + timedelta(minutes=5))])  # the re-send
    # and in one batch with a new event
    await updater.apply(
        [
            _sent(31, "dana", "first", t + timedelta(minutes=6)),
            _sent(32, "dana", "last", t + timedelta(minutes=6)),
        ]
    )
    reader = ProfileReader(redis)
    dana = await reader.get_profile("dana")
    assert dana is not None
    assert dana.event_count == 22
    assert dead.records == []
    assert await redis.zcard(event_ids_key("dana")) == 22


async def test_the_event_id_window_is_bounded_by_receive_time(redis_url: str, redis: Redis) -> None:
    """Ids received more than the window before the user's newest event are dropped (a re-send
    that late counts again: the documented bound)."""
    store = await _bounded_store(redis_url)
    try:
        dead = DeadLetters()
        await CatalogUpdater(store, dead).apply([product_record(0, "p1", "books", T0)])
        updater = EventUpdater(store, ModelHandle(store), ProfileConfig(seen_ids=0), dead)
        await updater.apply([_sent(1, "erin", "old", T0)])
        await updater.apply([_sent(2, "erin", "mid", T0 + timedelta(minutes=30))])
        await updater.apply([_sent(3, "erin", "new", T0 + timedelta(hours=2))])
        members = await redis.zrange(event_ids_key("erin"), 0, -1)
        assert len(members) == 1  # "old" and "mid" are more than an hour before "new"
        # within the window: recognised
        await updater.apply([_sent(4, "erin", "new", T0 + timedelta(hours=2, minutes=10))])
        erin = await ProfileReader(redis).get_profile("erin")
        assert erin is not None
        assert erin.event_count == 3
    finally:
        await store.stop()


async def _bounded_store(redis_url: str, **kw: Any) -> RedisStore:
    store = RedisStore(
        RedisSettings(url=SecretStr(redis_url)),
        timeout_s=5.0,
        trending_half_life_s=86_400.0,
        event_id_window_s=3600.0,
        **kw,
    )
    await store.start()
    return store


async def test_a_users_event_ids_are_capped_at_the_newest(redis_url: str, redis: Redis) -> None:
    """One user id sending without pause keeps at most ``event_id_max`` ids (the newest),
    however many it sends within the window."""
    store = await _bounded_store(redis_url, event_id_max=16)
    try:
        dead = DeadLetters()
        await CatalogUpdater(store, dead).apply([product_record(0, "p1", "books", T0)])
        updater = EventUpdater(store, ModelHandle(store), ProfileConfig(seen_ids=0), dead)
        sent = [_sent(n, "bot", f"bot-{n}", T0 + timedelta(seconds=n)) for n in range(1, 41)]
        for start in range(0, 40, 10):
            await updater.apply(sent[start : start + 10])
        assert await redis.zcard(event_ids_key("bot")) == 16
        scores = [s for _, s in await redis.zrange(event_ids_key("bot"), 0, -1, withscores=True)]
        assert min(scores) == (T0 + timedelta(seconds=25)).timestamp()  # the newest 16 of 40
        bot = await ProfileReader(redis).get_profile("bot")
        assert bot is not None
        assert bot.event_count == 40
    finally:
        await store.stop()


async def test_an_inactive_users_event_ids_are_dropped(redis_url: str, redis: Redis) -> None:
    """A user who stops sending leaves no event-id set behind: once an event received more
    than two windows after the user's newest is applied (for anyone), the set is deleted; a
    forged far-future receive time (its Kafka timestamp says now) drops nothing."""
    store = await _bounded_store(redis_url)
    try:
        dead = DeadLetters()
        await CatalogUpdater(store, dead).apply([product_record(0, "p1", "books", T0)])
        updater = EventUpdater(store, ModelHandle(store), ProfileConfig(seen_ids=0), dead)
        await updater.apply([_sent(1, "idle", "idle-1", T0), _sent(2, "busy", "busy-1", T0)])
        forged = replace(
            _sent(3, "mallory", "forged", datetime(2990, 1, 1, tzinfo=UTC), at=T0),
            timestamp_ms=int((T0 + timedelta(minutes=1)).timestamp() * 1000),
        )
        await updater.apply([forged])
        await updater.apply([_sent(4, "busy", "busy-2", T0 + timedelta(hours=2))])
        assert await redis.exists(event_ids_key("idle")) == 1  # two windows, not more
        await updater.apply([_sent(5, "busy", "busy-3", T0 + timedelta(hours=2, seconds=1))])
        assert await redis.exists(event_ids_key("idle")) == 0
        # the forged receive time counts as the Kafka timestamp + the skew bound (300 s)
        forged_at = (T0 + timedelta(minutes=6)).timestamp()
        assert await redis.zscore(EVENT_IDS_NEWEST, "mallory") == forged_at
        assert await redis.zscore(EVENT_IDS_NEWEST, "idle") is None
        assert await redis.zcard(event_ids_key("busy")) == 2  # within its own window
        # the idle user's profile is state: kept; its next event starts a new set
        idle = await ProfileReader(redis).get_profile("idle")
        assert idle is not None
        assert idle.event_count == 1
        await store.erase_users(["busy"])
        assert await redis.zscore(EVENT_IDS_NEWEST, "busy") is None
    finally:
        await store.stop()


async def test_an_event_the_archive_cannot_store_is_dead_lettered(
    store: RedisStore, redis: Redis
) -> None:
    """A record written past ingest with a NUL in ``session_id``, ``rec_id`` or ``context`` is
    dead-lettered with the field, as the archive does, instead of being counted in a profile
    the archive has no row for (an unpaired surrogate does not even decode); the user's other
    events count."""
    dead = DeadLetters()
    await CatalogUpdater(store, dead).apply([product_record(0, "p1", "books", T0)])
    updater = EventUpdater(store, ModelHandle(store), ProfileConfig(), dead)
    bad = [
        event_record(2, "nul", "view", "p1", T0, session_id="s\x00"),
        event_record(3, "nul", "click", "p1", T0, rec_id="r\x00"),
        event_record(4, "nul", "view", "p1", T0, context={"page": {"k\x00": 1}}),
    ]
    surrogate = event_record(5, "nul", "view", "p1", T0, session_id="SURROGATE")
    assert surrogate.value is not None
    bad.append(replace(surrogate, value=surrogate.value.replace(b"SURROGATE", b"\\ud800")))
    decoded = await updater.apply(
        [event_record(1, "nul", "view", "p1", T0), *bad, event_record(6, "nul", "view", "p1", T0)]
    )
    assert [e.event_id for e in decoded] == ["ev-1", "ev-6"]
    assert [(r.offset, reason) for r, reason in dead.records] == [
        (2, "unstorable"),
        (3, "unstorable"),
        (4, "unstorable"),
        (5, "invalid"),
    ]
    user = await ProfileReader(redis).get_profile("nul")
    assert user is not None
    assert user.event_count == 2


async def test_a_processing_error_dead_letters_only_that_users_events(
    store: RedisStore, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One user's update failing (a bug in the maths) dead-letters that user's events; the other
    users of the same batch land in their profiles."""
    dead = DeadLetters()
    await CatalogUpdater(store, dead).apply(
        [product_record(0, "p1", "books", T0), product_record(1, "boom", "books", T0)]
    )
    boom = (await store.intern(PRODUCT_DICT, ["boom"]))["boom"]
    real = updater_module.apply_events

    def failing(old: Any, events: Any, cfg: Any, known: Any = frozenset()) -> Any:
        if any(e.product == boom for e in events):
            raise ZeroDivisionError("a bug")
        return real(old, events, cfg, known)

    monkeypatch.setattr(updater_module, "apply_events", failing)
    updater = EventUpdater(store, ModelHandle(store), ProfileConfig(), dead)
    await updater.apply(
        [
            event_record(1, "fay", "view", "p1", T0),
            event_record(2, "gus", "view", "boom", T0),
            event_record(3, "fay", "click", "p1", T0),
            event_record(4, "gus", "view", "p1", T0),
            event_record(5, "hal", "view", "p1", T0),
        ]
    )
    assert sorted((r.offset, reason) for r, reason in dead.records) == [
        (2, "processing_error"),
        (4, "processing_error"),
    ]
    reader = ProfileReader(redis)
    fay, hal = await reader.get_profile("fay"), await reader.get_profile("hal")
    assert fay is not None
    assert fay.event_count == 2
    assert hal is not None
    assert hal.event_count == 1
    assert await reader.get_profile("gus") is None


async def test_a_far_future_event_neither_wipes_nor_tops_trending(
    store: RedisStore, redis: Redis
) -> None:
    """One record stamped in year 2990 (written past ingest, which refuses it) between events
    received now: trending counts it at its receive time + the skew bound, so the other
    products keep their scores and order, and it is not pinned on top."""
    dead = DeadLetters()
    now = datetime.now(UTC)
    await CatalogUpdater(store, dead).apply(
        [product_record(0, "ff-hot", "c", T0), product_record(1, "ff-far", "c", T0)]
    )
    updater = EventUpdater(store, ModelHandle(store), ProfileConfig(), dead, max_future_skew_s=300)
    sold = [
        _sent(
            n,
            f"buyer{n}",
            f"ff-hot-{n}",
            now - timedelta(minutes=n),
            kind="purchase",
            product="ff-hot",
        )
        for n in range(5)
    ]
    await updater.apply(sold)
    before = dict(await ProfileReader(redis).top_trending(50))
    assert before["ff-hot"] > 0
    far = datetime(2990, 1, 1, tzinfo=UTC)
    await updater.apply([_sent(10, "mallory", "ff-future", now, product="ff-far", at=far)])
    top = await ProfileReader(redis).top_trending(50)
    scores = dict(top)
    # not decayed away: valued at most the skew (300 s of a 24 h half-life) later
    assert scores["ff-hot"] == pytest.approx(before["ff-hot"], rel=1e-2)
    assert top[0][0] == "ff-hot"  # a view (weight 1) after five purchases, not on top
    assert scores["ff-far"] < scores["ff-hot"]
    meta = await redis.hgetall(TRENDING_META)
    assert float(meta[b"t"]) <= now.timestamp() + 300  # the clock moved at most the skew
    # a producer that forged the receive time as well: the Kafka record's timestamp bounds it
    forged = _sent(11, "mallory", "ff-forged", far, product="ff-far", at=far)
    appended = replace(forged, timestamp_ms=int(now.timestamp() * 1000))
    await updater.apply([appended])
    assert float((await redis.hgetall(TRENDING_META))[b"t"]) <= now.timestamp() + 300
    scores = dict(await ProfileReader(redis).top_trending(50))
    assert scores["ff-hot"] == pytest.approx(before["ff-hot"], rel=1e-2)
