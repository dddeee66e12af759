"""Attribution on a real Redis: clicks and conversions counted once per event id, purchases
without rec id attributed through what the recommender showed, old responses ignored."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from redis.asyncio import Redis

from streamrec_shared import feedback, metrics
from streamrec_shared.events import UserEvent
from streamrec_shared.feedback import RecTag
from streamrec_shared.rec_ids import RecIds
from streamrec_stream_processor.attribution import Attributor

REC_IDS = RecIds(b"k" * 32, feedback.ALGORITHM_CODES)


def event(event_id: str, kind: str, product: str, rec_id: str | None, at: float) -> UserEvent:
    when = datetime.fromtimestamp(at, UTC)
    return UserEvent(
        event_id=event_id,
        user_id="u1",
        event_type=kind,
        product_id=product,
        timestamp=when,
        received_at=when,
        rec_id=rec_id,
    )


async def counts(redis: Redis, minute: int) -> dict[str, int]:
    raw = await redis.hgetall(feedback.bucket_key(minute))
    return {k.decode(): int(v) for k, v in raw.items()}


async def test_clicks_and_conversions_count_once_and_replays_count_nothing(redis: Redis) -> None:
    now = time.time()
    tag = RecTag(now - 30, "itemknn", "light", "ab", "treat")
    rec_id = REC_IDS.new(tag)
    shown = RecTag(now - 20, "als", "heavy")
    shown_id = REC_IDS.new(shown)
    # the recommender's impression record: p9 was shown under shown_id
    await redis.hset(feedback.shown_key("u1"), "p9", shown_id)
    old = REC_IDS.new(RecTag(now - 10_000, "als", "new"))
    attributor = Attributor(redis, window_s=3600, retention_s=7200, rec_ids=REC_IDS)
    batch = [
        event("e1", "click", "p1", rec_id, now),
        event("e2", "view", "p2", rec_id, now),  # a second click on the same response
        event("e3", "purchase", "p1", rec_id, now),
        event("e4", "purchase", "p9", None, now),  # no rec id: found in sr:rs:u1
        event("e5", "purchase", "p8", None, now),  # never shown: not attributed
        event("e6", "view", "p3", None, now),  # not feedback
        event("e7", "click", "p1", old, now),  # outside the window
        event("e8", "click", "p1", "not-a-rec-id", now),
        event("e9", "click", "p1", rec_id.replace(".treat", ".ctl"), now),  # altered
        event("e10", "click", "p1", RecIds(b"o" * 32, feedback.ALGORITHM_CODES).new(tag), now),
    ]
    rejected = metrics.PROCESSOR_FEEDBACK_REJECTED.labels("unverified")
    before = rejected._value.get()
    kinds = await attributor.apply(batch)
    assert kinds == ["click", "click", "conversion", "conversion"] + [None] * 6
    assert rejected._value.get() - before == 3  # e8, e9, e10 (e7 is expired)
    # the variant label: a known variant, else "other" (the known set is read from Redis)
    assert attributor.known_variants == frozenset(feedback.ROLLOUT_VARIANTS)
    attributed = metrics.PROCESSOR_ATTRIBUTED_EVENTS.labels("itemknn", "other", "click")
    assert attributed._value.get() >= 1
    labels = ("itemknn", "light", "ab", "treat")
    assert await counts(redis, tag.minute) == {
        feedback.field("clk", *labels): 2,
        feedback.field("hit", *labels): 1,
        feedback.field("conv", *labels): 1,
        **(
            {feedback.field("conv", "als", "heavy", None, None): 1}
            if shown.minute == tag.minute
            else {}
        ),
    }
    conv_als = feedback.field("conv", "als", "heavy", None, None)
    assert (await counts(redis, shown.minute))[conv_als] == 1
    # a replay of the batch (a crash before the offset commit) counts nothing
    assert await attributor.apply(batch) == [None] * len(batch)
    assert (await counts(redis, tag.minute))[feedback.field("clk", *labels)] == 2
    assert 0 < await redis.ttl(feedback.bucket_key(tag.minute)) <= 7200
