"""Load the synthetic demo shop into a running stack through the public HTTP APIs."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from streamrec_dev import synthetic
from streamrec_dev.localstack.stack import StackDescription

logger = logging.getLogger(__name__)


async def load(
    desc: StackDescription,
    *,
    n_users: int = 300,
    n_products: int = 400,
    events_per_user: int = 25,
    train: bool = True,
) -> dict[str, Any]:
    """Products, then events (batches of 500), then one training run. Returns a summary."""
    shop = synthetic.shop(
        n_users=n_users,
        n_products=n_products,
        events_per_user=events_per_user,
        end=datetime.now(UTC),  # a retrain after more events has a holdout of these users
    )
    async with desc.client() as client:
        for chunk in synthetic.batches(shop.products, 500):
            await client.put_products(chunk)
        sent = 0
        for chunk in synthetic.batches(shop.events, 500):
            sent += (await client.send_events(chunk))["accepted"]
        job: dict[str, Any] = {}
        # train on the whole history: wait until the archive has caught up (bounded)
        deadline = time.monotonic() + 60
        while train and time.monotonic() < deadline:
            stats = await client.request("GET", "trainer", "/v1/archive")
            if stats["interactions"] >= sent:
                break
            await asyncio.sleep(0.2)
        if train:
            job_id = await client.train()
            job = (await client.wait_for_job(job_id)).model_dump()
    return {"products": len(shop.products), "events": sent, "users": len(shop.users), "job": job}


def load_sync(desc: StackDescription, **kwargs: Any) -> dict[str, Any]:
    return asyncio.run(load(desc, **kwargs))
