"""The every-N-archived-events trigger fires by itself and the job says why
(``GET /v1/train`` and ``GET /v1/train/{job_id}``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from streamrec_client import AsyncStreamrecClient
from streamrec_dev import synthetic
from streamrec_dev.localstack.stack import LocalStack, StackDescription

from ..polling import eventually

pytestmark = [pytest.mark.stack, pytest.mark.slow]


async def test_events_trigger_fires_and_records_its_reason(
    local_stack: LocalStack, stack: StackDescription, client: AsyncStreamrecClient
) -> None:
    # the session stack runs without triggers: this test turns the event trigger on for itself
    local_stack.stop_process("trainer")
    local_stack.start_service(
        "trainer",
        extra_env={
            "STREAMREC_TRAINING__AFTER_EVENTS": "300",
            "STREAMREC_TRAINING__INTERVAL_S": "0",
        },
    )
    local_stack.wait_ready("trainer", timeout=90)
    try:
        before = await client.request("GET", "trainer", "/v1/train", params={"limit": 500})
        known = {j["job_id"] for j in before["jobs"]}
        assert before["triggers"]["after_events"] == 300
        shop = synthetic.shop(
            n_users=30, n_products=40, events_per_user=15, seed=77, user_prefix="trig",
            days=3, end=datetime.now(UTC),
        )  # fmt: skip
        assert len(shop.events) > 300
        await client.put_products(shop.products)
        for batch in synthetic.batches(shop.events, 200):
            await client.send_events(batch)

        found: dict[str, Any] = {}

        async def triggered() -> bool:
            jobs = await client.request("GET", "trainer", "/v1/train", params={"limit": 20})
            new = [j for j in jobs["jobs"] if j["job_id"] not in known]
            if new:
                found.update(new[-1])
            return bool(new)

        await eventually(triggered, timeout=90, what="an events-triggered job", interval=0.5)
        reason = found["reason"]
        assert reason.startswith("events:"), found
        assert int(reason.split(":", 1)[1]) >= 300
        job = await client.wait_for_job(found["job_id"], timeout=300)
        assert job["reason"] == reason
        assert job["status"] in ("published", "rejected", "failed")
    finally:
        local_stack.stop_process("trainer")
        local_stack.start_service("trainer")
        local_stack.wait_ready("trainer", timeout=90)
    after = await client.request("GET", "trainer", "/v1/train")
    assert after["triggers"]["after_events"] == 0
