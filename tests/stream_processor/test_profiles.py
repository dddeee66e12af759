"""Pure profile maths: weights, event-time decay, caps, histories, segment, exactly-once."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from streamrec_shared.events import UserEvent
from streamrec_shared.profile import decode_profile, encode_profile, event_digest
from streamrec_stream_processor.profiles import (
    PURCHASE,
    TYPE_INDEX,
    VIEW,
    EventFacts,
    ProfileConfig,
    apply_events,
    facts,
)

DAY = 86_400.0
T0 = 1_700_000_000.0
CFG = ProfileConfig(half_life_days=30.0, max_items=200, max_history=50, max_categories=16)
WEIGHTS = {"view": 1.0, "click": 2.0, "add_to_cart": 3.0, "remove_from_cart": -3.0, "purchase": 5.0}


def ev(
    n: int,
    event_type: str,
    product: int,
    ts: float = T0,
    *,
    category: int = -1,
    partition: int = 0,
    weight: float | None = None,
) -> EventFacts:
    """Event number ``n`` (its offset and event id)."""
    return EventFacts(
        digest=event_digest(f"e{n}"),
        type_index=TYPE_INDEX[event_type],
        product=product,
        category=category,
        weight=WEIGHTS[event_type] if weight is None else weight,
        ts=ts,
        partition=partition,
        offset=n,
    )


def weights_of(p: object) -> dict[int, float]:
    assert p is not None
    return dict(zip(p.item_codes.tolist(), p.item_weights.tolist(), strict=True))  # type: ignore[attr-defined]


def test_weights_counts_histories_and_segment() -> None:
    events = [
        ev(1, "view", 10, category=1),
        ev(2, "click", 10, category=1),
        ev(3, "add_to_cart", 11, category=2),
        ev(4, "purchase", 11, category=2),
        ev(5, "view", 12, category=1),
    ]
    up = apply_events(None, events, CFG)
    p = up.profile
    assert p is not None
    assert len(up.applied) == 5
    assert up.duplicates == 0
    assert weights_of(p) == {10: 3.0, 11: 8.0, 12: 1.0}
    assert p.item_codes.tolist() == [11, 10, 12]  # heaviest first
    assert p.view_codes.tolist() == [12, 10]  # most recent first
    assert p.purchase_codes.tolist() == [11]
    assert dict(zip(p.category_codes.tolist(), p.category_weights.tolist(), strict=True)) == {
        2: 8.0,
        1: 4.0,
    }
    assert p.counts.tolist() == [2, 1, 1, 0, 1, 0]
    assert p.event_count == 5
    assert p.segment == "light"
    assert (p.first_ts, p.last_ts) == (T0, T0)
    assert (p.partition, p.offset, p.rev) == (0, 5, 1)


def test_segment_thresholds() -> None:
    p = apply_events(None, [ev(i, "view", i) for i in range(4)], CFG).profile
    assert p is not None
    assert p.segment == "new"
    p = apply_events(None, [ev(i, "view", i % 7) for i in range(50)], CFG).profile
    assert p is not None
    assert p.segment == "heavy"


def test_remove_from_cart_cancels_add_to_cart() -> None:
    p = apply_events(None, [ev(1, "add_to_cart", 5), ev(2, "remove_from_cart", 5)], CFG).profile
    assert p is not None
    assert 5 not in weights_of(p)  # net 0: forgotten
    p = apply_events(None, [ev(1, "view", 5), ev(2, "remove_from_cart", 5)], CFG).profile
    assert weights_of(p) == {5: -2.0}  # kept (order independence), never folded in


def test_decay_is_relative_to_event_time() -> None:
    p = apply_events(None, [ev(1, "purchase", 1, T0), ev(2, "view", 2, T0 + 30 * DAY)], CFG)
    w = weights_of(p.profile)
    assert w[1] == pytest.approx(2.5, rel=1e-3)  # one half-life later
    assert w[2] == pytest.approx(1.0)
    assert p.profile is not None
    assert p.profile.last_ts == T0 + 30 * DAY


@pytest.mark.parametrize("split", [1, 2, 3])
def test_order_and_batching_do_not_change_the_result(split: int) -> None:
    rng = np.random.default_rng(3)
    kinds = list(WEIGHTS)
    events = [
        ev(
            i,
            kinds[int(rng.integers(5))],
            int(rng.integers(8)),
            T0 + float(rng.uniform(0, 90)) * DAY,
        )
        for i in range(40)
    ]
    reference = weights_of(apply_events(None, events, CFG).profile)
    shuffled = list(events)
    rng.shuffle(shuffled)
    shuffled = [
        EventFacts(e.digest, e.type_index, e.product, e.category, e.weight, e.ts, 0, i)
        for i, e in enumerate(shuffled)
    ]
    p = None
    size = math.ceil(len(shuffled) / split)
    for lo in range(0, len(shuffled), size):
        p = apply_events(p, shuffled[lo : lo + size], CFG).profile
        assert p is not None
        p = decode_profile(encode_profile(p))  # as stored: float16 weights
    got = weights_of(p)
    assert set(got) == set(reference)
    for code, w in reference.items():
        assert got[code] == pytest.approx(w, rel=2e-3, abs=1e-3)


def test_caps_keep_the_heaviest_items() -> None:
    cfg = ProfileConfig(max_items=3, max_history=2, max_categories=1)
    events = [ev(i, "view", i, category=i) for i in range(5)] + [ev(10, "purchase", 0)]
    p = apply_events(None, events, cfg).profile
    assert p is not None
    assert p.item_codes.tolist()[0] == 0
    assert len(p.item_codes) == 3
    assert p.view_codes.tolist() == [4, 3]
    assert len(p.category_codes) == 1


def test_replayed_offsets_are_skipped() -> None:
    events = [ev(i, "view", i) for i in range(1, 11)]
    first = apply_events(None, events[:6], CFG)
    assert first.profile is not None
    # after a crash the consumer restarts at a committed offset before 6: 4..10 arrive again
    again = apply_events(first.profile, events[3:], CFG)
    assert again.duplicates == 3
    assert len(again.applied) == 4
    assert again.profile is not None
    assert again.profile.event_count == 10
    # the whole history once more: nothing to write
    replay = apply_events(again.profile, events, CFG)
    assert replay.profile is None
    assert replay.duplicates == 10


def test_same_event_id_at_a_new_offset_is_skipped() -> None:
    first = apply_events(None, [ev(1, "purchase", 1)], CFG).profile
    dup = EventFacts(event_digest("e1"), PURCHASE, 1, -1, 5.0, T0, 0, 7)
    up = apply_events(first, [dup, ev(8, "view", 2)], CFG)
    assert up.duplicates == 1
    assert len(up.applied) == 1
    assert up.profile is not None
    assert up.profile.counts[PURCHASE] == 1
    assert up.profile.counts[VIEW] == 1
    assert up.profile.offset == 8


def test_seen_ring_is_bounded() -> None:
    cfg = ProfileConfig(seen_ids=4)
    p = apply_events(None, [ev(i, "view", i) for i in range(10)], cfg).profile
    assert p is not None
    assert len(p.seen) == 4
    assert p.seen.tolist() == [event_digest(f"e{i}") for i in range(6, 10)]


def test_facts_of_a_user_event() -> None:
    e = UserEvent(
        event_id="abc",
        user_id="u1",
        event_type="rating",
        product_id="p1",
        value=4.0,
        timestamp=datetime.fromtimestamp(T0, UTC),
        received_at=datetime.fromtimestamp(T0 + 1, UTC),
    )
    f = facts(e, product=3, category=-1, partition=2, offset=9)
    assert (f.weight, f.ts, f.partition, f.offset, f.product) == (4.0, T0, 2, 9, 3)
    assert f.digest == event_digest("abc")
    assert f.received_at == T0 + 1  # the clock of the event-id window


def test_profile_codec_roundtrip_and_size() -> None:
    events = [ev(i, "view", 1000 + i, T0 + i, category=i % 8) for i in range(250)]
    events += [ev(300 + i, "purchase", 1000 + i, T0 + 300) for i in range(0, 100, 5)]
    p = apply_events(None, events, CFG).profile
    assert p is not None
    p = replace(p, vector=np.ones(64, np.float32), model_version=3)
    raw = encode_profile(p)
    q = decode_profile(raw)
    assert len(q.item_codes) == 200
    assert len(q.view_codes) == 50
    assert len(q.purchase_codes) == 20
    for name in ("item_codes", "view_codes", "purchase_codes", "category_codes", "seen", "counts"):
        assert getattr(q, name).tolist() == getattr(p, name).tolist(), name
    np.testing.assert_allclose(q.item_weights, p.item_weights, rtol=1e-3)
    assert q.vector.tolist() == [1.0] * 64
    assert q.model_version == 3
    assert (q.rev, q.partition, q.offset, q.segment) == (p.rev, p.partition, p.offset, p.segment)
    assert len(raw) <= 1792  # jemalloc size class: MEMORY USAGE stays below 2 KB


def test_a_resend_after_more_than_seen_ids_newer_events_is_skipped_when_known() -> None:
    """A client re-sends event 1 (same event id, a new offset) after 20 newer events of the
    user: beyond the profile's ``seen`` digests, so only the event-id window (``known``, read
    from the user's Redis set) recognises it."""
    first = apply_events(None, [ev(i, "view", i) for i in range(1, 22)], CFG).profile
    assert first is not None
    resent = replace(ev(1, "view", 1), offset=40)
    assert event_digest("e1") not in first.seen.tolist()  # the 16 newest digests only
    counted_twice = apply_events(first, [resent], CFG)
    assert len(counted_twice.applied) == 1  # what the profile alone would do

    up = apply_events(first, [resent, ev(41, "view", 2)], CFG, known={event_digest("e1")})
    assert up.duplicates == 1
    assert [f.offset for f in up.applied] == [41]
    assert up.profile is not None
    assert up.profile.event_count == 22
    assert up.profile.offset == 41  # the watermark moves past the skipped copy
