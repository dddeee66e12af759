"""Forged feedback gives no credit (issue 17, point 7), through the HTTP APIs of the stack.

Rec ids are signed by the recommender and verified by the stream processor. A click whose
rec id was made up or altered still counts in the user's profile, but credits no algorithm,
variant or experiment (nothing in ``/v1/metrics/online``, no hit recorded for it) and is
counted on ``streamrec_processor_feedback_rejected_total``; a genuine rec id is credited. The
processor's and the recommender's metric labels never carry a name the client made up.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from streamrec_client import AsyncStreamrecClient
from streamrec_dev.localstack.stack import StackDescription
from streamrec_shared import feedback

from ..polling import eventually

pytestmark = [pytest.mark.stack]


async def _metrics(url: str) -> dict[str, list[dict[str, str]]]:
    """metric sample name -> the label sets of its samples."""
    async with httpx.AsyncClient(timeout=5.0) as http:
        text = (await http.get(url + "/metrics")).text
    out: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(dict(sample.labels))
    return out


def _rejected(text: str) -> float:
    return sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith('streamrec_processor_feedback_rejected_total{reason="unverified"')
    )


async def _scrape(url: str) -> str:
    async with httpx.AsyncClient(timeout=5.0) as http:
        return (await http.get(url + "/metrics")).text


async def test_forged_rec_ids_give_no_credit_and_genuine_ones_do(
    client: AsyncStreamrecClient, stack: StackDescription
) -> None:
    run = uuid.uuid4().hex[:8]
    user = f"trust-{run}"
    answer: dict[str, Any] = await client.recommendations(user, k=3)  # type: ignore[assignment]
    genuine = answer["rec_id"]
    product = answer["items"][0]["product_id"] if answer["items"] else "p000001"
    head = genuine.split(".")[:3]
    forged_exp, forged_variant = f"forged{run}", f"evil{run}"
    forged = [
        # a well-formed rec id naming an experiment and variant nobody created
        f"r{head[0][1:]}.{head[1]}.AAAAAAAAAAAAAA.{forged_exp}.{forged_variant}",
        ".".join([*head, forged_exp, forged_variant]),  # a genuine one, altered
        f"{head[0]}.pl.{head[2]}",  # another algorithm
    ]
    processor = stack.urls["stream-processor"]
    before = _rejected(await _scrape(processor))
    now = time.time()
    events = [
        {"event_id": f"{run}-f{i}", "user_id": user, "event_type": "click",
         "timestamp": now, "product_id": product, "rec_id": rec_id}
        for i, rec_id in enumerate(forged)
    ] + [
        {"event_id": f"{run}-g", "user_id": user, "event_type": "click",
         "timestamp": now, "product_id": product, "rec_id": genuine}
    ]  # fmt: skip
    await client.send_events(events)  # one user: one partition, applied in this order

    redis = Redis.from_url(stack.redis_url)
    try:

        async def credited() -> bool | None:
            return True if await redis.exists(feedback.hit_key(genuine)) else None

        await eventually(credited, timeout=30, what="the genuine click to be credited")
        for rec_id in forged:
            assert not await redis.exists(feedback.hit_key(rec_id)), rec_id
    finally:
        await redis.aclose()

    async def counted() -> bool | None:  # the events still count in the profile
        profile = await client.user_profile(user)
        return True if profile.counts.get("click") == len(events) else None

    await eventually(counted, timeout=30, what="all four clicks in the profile")
    after = _rejected(await _scrape(processor))
    assert after - before >= len(forged)
    report = await client.request(
        "GET", "recommender", "/v1/metrics/online", params={"window": 3600}
    )
    assert forged_exp not in report["experiments"]

    # metric labels from input: only known values (else "other")
    conn = await asyncpg.connect(stack.postgres_dsn)
    try:
        rows = await conn.fetch("SELECT variants::text AS v FROM experiments")
    finally:
        await conn.close()
    known = {v["name"] for r in rows for v in json.loads(r["v"])}
    known |= {*feedback.ROLLOUT_VARIANTS, feedback.NONE, feedback.OTHER}
    for url, name in (
        (processor, "streamrec_processor_attributed_events_total"),
        (stack.urls["recommender"], "streamrec_recommender_online_events_total"),
    ):
        samples = (await _metrics(url)).get(name, [])
        variants = {s["variant"] for s in samples}
        assert variants <= known, (name, variants - known)
        assert forged_variant not in variants
