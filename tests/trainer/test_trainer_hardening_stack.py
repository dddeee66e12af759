"""Issue 17 on the trainer side, through the real stack: bad admin input is a 4xx, never a 500;
artifact URIs are shown only with a key; an erased user is gone from the next model."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
import pytest_asyncio

from streamrec_client import AsyncStreamrecClient
from streamrec_dev import synthetic
from streamrec_dev.localstack.stack import StackDescription

from ..archive import send_archived, wait_archived

pytestmark = pytest.mark.slow


async def test_bad_admin_input_is_a_4xx_naming_the_field(stack: StackDescription) -> None:
    """Finding 8: activate/2147483648 and Infinity in train params were 500s."""
    admin = {"X-API-Key": stack.api_keys["admin"], "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=stack.urls["trainer"], timeout=10) as c:
        r = await c.post("/v1/models/2147483648/activate", headers=admin)
        assert r.status_code == 422, r.text
        assert "version" in r.text
        r = await c.post("/v1/models/2147483647/activate", headers=admin)
        assert r.status_code == 404, r.text
        for body in (
            b'{"params": {"alpha": Infinity}}',
            b'{"params": {"regularization": NaN}}',
            b'{"params": {"window_days": -Infinity}}',
            b'{"params": {"eval_max_users": 100000000000000000000000}}',
        ):
            r = await c.post("/v1/train", content=body, headers=admin)
            assert r.status_code == 422, (body, r.text)
            field = body.split(b'"')[3].decode()
            assert any(d["field"] == field for d in r.json()["error"]["details"]), r.text


@dataclass(frozen=True)
class Trained:
    shop: synthetic.Shop
    job: Any


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def trained(stack: StackDescription, module_client: AsyncStreamrecClient) -> Trained:
    """A small shop of this module's own users, archived, and a model published on it."""
    return await _train_shop(stack, module_client)


async def _train_shop(stack: StackDescription, client: AsyncStreamrecClient) -> Trained:
    shop = synthetic.shop(
        n_users=60,
        n_products=80,
        events_per_user=20,
        seed=1713,
        start=datetime.now(UTC) - timedelta(days=10),
        days=10,
        user_prefix="erase",
    )
    await client.put_products(shop.products)
    await send_archived(client, stack.postgres_dsn, shop.events)
    return Trained(shop, await _published_model(client, {"gate_tolerance": 1.0}))


async def test_artifact_uris_need_a_key(stack: StackDescription, trained: Trained) -> None:
    """Finding 3 (trainer side): /v1/models showed where the artifacts are to anyone."""
    async with httpx.AsyncClient(base_url=stack.urls["trainer"], timeout=10) as c:
        anonymous = (await c.get("/v1/models")).json()
        keyed = (await c.get("/v1/models", headers={"X-API-Key": stack.api_keys["reader"]})).json()
        active = (await c.get("/v1/models/active")).json()
        wrong = (await c.get("/v1/models", headers={"X-API-Key": "nope"})).json()
    assert anonymous["models"]
    assert all(m["artifact_uri"] is None for m in anonymous["models"])
    assert all(m["artifact_uri"] is None for m in wrong["models"])
    assert active["artifact_uri"] is None
    assert any(m["artifact_uri"] for m in keyed["models"])


async def _published_model(client: AsyncStreamrecClient, params: dict[str, Any]) -> Any:
    job_id = (await client.request("POST", "trainer", "/v1/train", json={"params": params}))[
        "job_id"
    ]
    job = await client.wait_for_job(job_id, timeout=240)
    assert job["status"] == "published", job
    return job


async def _model_users(client: AsyncStreamrecClient, version: int) -> set[str]:
    """Every user id any file of the model version holds (als.npz, topn.npz, ...)."""
    models = await client.request("GET", "trainer", "/v1/models")
    (row,) = [m for m in models["models"] if m["version"] == version]
    return await asyncio.to_thread(_users_in, Path(urlparse(row["artifact_uri"]).path))


def _users_in(root: Path) -> set[str]:
    users: set[str] = set()
    for file in root.glob("*.npz"):
        with np.load(file, allow_pickle=False) as arrays:
            if "user_ids" in arrays.files:
                users.update(arrays["user_ids"].tolist())
    return users


async def test_an_erased_user_is_not_in_the_next_model(
    stack: StackDescription, client: AsyncStreamrecClient, trained: Trained
) -> None:
    """Finding 13: train, erase a user, retrain: the new model does not carry the user."""
    shop = trained.shop
    gone, kept = shop.users[0], shop.users[1]
    users = await _model_users(client, trained.job["model_version"])
    assert {gone, kept} <= users

    erased = await client.request("DELETE", "ingest", f"/v1/users/{gone}")
    assert erased["interactions_deleted"] > 0
    # an event of the user still in flight when the erasure happened, archived after it
    late = {"user_id": gone, "event_type": "view", "product_id": shop.products[0]["product_id"]}
    await client.send_events([{**late, "event_id": "late-1713"}])
    late_rows = await wait_archived(
        stack.postgres_dsn, ["late-1713"], what="the late event archived", timeout=30
    )
    assert late_rows == {"late-1713": 1}

    after = await _published_model(client, {"gate_tolerance": 1.0})
    users = await _model_users(client, after["model_version"])
    assert kept in users
    assert gone not in users
