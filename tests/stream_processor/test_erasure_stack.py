"""An erasure (``DELETE /v1/users/{id}`` -> ``UserErased`` on users.v1) empties what the stream
processor holds about the user in Redis: profile, attributes, cached answers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from streamrec_client import AsyncStreamrecClient
from streamrec_dev.localstack.stack import StackDescription
from streamrec_shared import profile
from streamrec_stream_processor.store import event_ids_key

from ..polling import eventually

pytestmark = [pytest.mark.stack]


async def test_an_erasure_deletes_the_live_profile(
    stack: StackDescription, client: AsyncStreamrecClient
) -> None:
    user = "erase-live-1"
    now = datetime.now(UTC).timestamp()
    await client.request("PUT", "ingest", f"/v1/users/{user}", json={"attributes": {"c": "FR"}})
    await client.send_events(
        [
            {"user_id": user, "event_type": "view", "product_id": f"p00000{i}", "timestamp": now}
            for i in range(3)
        ]
    )
    redis = Redis.from_url(stack.redis_url)
    keys = (profile.profile_key(user), profile.user_attributes_key(user), event_ids_key(user))
    try:

        async def stored() -> bool:
            return int(await redis.exists(*keys)) == len(keys)

        await eventually(stored, timeout=30, what="the profile, event ids and attributes")

        await client.request("DELETE", "ingest", f"/v1/users/{user}")

        async def gone() -> bool:
            return int(await redis.exists(*keys)) == 0

        await eventually(gone, timeout=30, what="the erasure to empty the user's Redis keys")
        answer = await client.recommendations(user, k=5)
        assert answer["segment"] == "new"
    finally:
        await redis.aclose()
