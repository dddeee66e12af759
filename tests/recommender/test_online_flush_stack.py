"""The impression flush against the stack's real Redis: written in several bounded parts, each
complete (shown products per user, conditional result-cache writes)."""

from __future__ import annotations

import time
import uuid

import pytest
from redis.asyncio import Redis

from streamrec_dev.localstack.stack import StackDescription
from streamrec_recommender.adapters import impressions as attribution
from streamrec_recommender.adapters.impressions import OnlineRecorder
from streamrec_recommender.online import ALGORITHM_CODES, RecTag
from streamrec_shared import profile
from streamrec_shared.feedback import shown_key
from streamrec_shared.rec_ids import RecIds

new_rec_id = RecIds(b"k" * 32, ALGORITHM_CODES).new

pytestmark = [pytest.mark.stack]


async def test_a_large_flush_is_written_in_parts_and_completely(stack: StackDescription) -> None:
    redis = Redis.from_url(stack.redis_url)
    run = uuid.uuid4().hex[:8]
    recorder = OnlineRecorder(redis, window_s=600, retention_s=3600, cache_ttl_s=60)
    tag = RecTag(time.time(), "als", "light")
    users = [f"flush-{run}-{i}" for i in range(400)]
    shown: dict[str, dict[str, str]] = {}
    for i, user in enumerate(users):
        rec_id = new_rec_id(tag)
        products = [f"p{(i + j) % 1000:06d}" for j in range(10)]
        recorder.impression(user, rec_id, tag, products)
        shown[user] = dict.fromkeys(products, rec_id)
    many = f"flush-{run}-many"  # more pairs than one HSET takes
    rec_id = new_rec_id(tag)
    recorder.impression(many, rec_id, tag, [f"x{j}" for j in range(2 * attribution.MAX_PAIRS + 5)])
    # result-cache writes: kept only where the profile still has the revision they saw
    current, stale = users[0], users[1]
    await redis.set(profile.profile_key(current), b"REV01rest-of-profile")
    await redis.set(profile.profile_key(stale), b"REV02rest-of-profile")
    for user in users:
        recorder.cache(user, "field", b'{"items":[]}', b"REV01")

    parts = list(recorder._record_parts(recorder._shown, recorder._cache))
    assert len(parts) > 2
    assert all(
        len(args) <= attribution.RECORD_ARGS + 2 * attribution.MAX_PAIRS + 6 for args in parts
    )
    await recorder.flush()

    for user in users[::37]:
        got = await redis.hgetall(shown_key(user))
        assert got == {k.encode(): v.encode() for k, v in shown[user].items()}
        assert 0 < await redis.ttl(shown_key(user)) <= 600
    assert await redis.hlen(shown_key(many)) == 2 * attribution.MAX_PAIRS + 5
    assert await redis.hget(profile.rec_cache_key(current), "field") == b'{"items":[]}'
    assert await redis.hget(profile.rec_cache_key(stale), "field") is None
    assert await redis.exists(profile.rec_cache_key(users[2])) == 0  # no profile: no write
    await redis.aclose()
