"""Sessions end to end on the running stack: a click answered at once moves the next answer
(read-your-writes), and ``context=`` alone gives an unknown user the context items' neighbours.

A synthetic bundle with a session index (``sknn``: sessions {j, j+8, j+16}, so a product's
session neighbours are the products 8 and 16 apart) is registered and announced; every answer
below is asked right after the 202, with no wait.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import pytest_asyncio

from streamrec_client import AsyncStreamrecClient
from streamrec_dev import synthetic
from streamrec_dev.localstack.stack import StackDescription
from streamrec_dev.synthetic_model import make_bundle
from streamrec_shared.artifacts import ModelBundle

from ..bundles import activate_new, cold_user, wait_served
from .test_sessions_unit import session_index

pytestmark = [pytest.mark.stack]

N_PRODUCTS = 300
EVENT_TIME = 1_737_374_400  # inside the synthetic shop's window (see test_recommender_stack)


def ids(rec: Any) -> list[str]:
    return [item["product_id"] for item in rec["items"]]


def _bundle(version: int) -> ModelBundle:
    bundle = make_bundle(version=version, n_items=N_PRODUCTS, n_users=200, factors=16)
    return dataclasses.replace(bundle, extra_files={"sknn": session_index(N_PRODUCTS).arrays()})


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def sessions_model(stack: StackDescription, module_client: AsyncStreamrecClient) -> int:
    await module_client.put_products(synthetic.catalog(N_PRODUCTS))
    _, version = await activate_new(stack, _bundle)
    return await wait_served(module_client, version, algorithm="sknn")


async def test_a_click_answered_at_once_moves_the_next_answer(
    client: AsyncStreamrecClient, sessions_model: int
) -> None:
    user, _ = await cold_user(client, "click", k=10)
    await client.send_event(
        {"user_id": user, "event_type": "click", "product_id": "p000100",
         "timestamp": EVENT_TIME}
    )  # fmt: skip
    after = await client.recommendations(user, k=10)  # at once: no wait after the 202
    assert after["model_version"] == sessions_model
    assert (after["strategy"], after["algorithm"]) == ("recent_items", "sknn"), after
    assert {"p000092", "p000108"} <= set(ids(after)[:4])
    assert "p000100" not in ids(after)

    # the next click leads: its neighbours come first, at once again
    await client.send_event(
        {"user_id": user, "event_type": "click", "product_id": "p000201",
         "timestamp": EVENT_TIME + 5}
    )  # fmt: skip
    again = await client.recommendations(user, k=10)
    assert set(ids(again)[:2]) == {"p000193", "p000209"}, again
    assert ids(again) != ids(after)


async def test_context_alone_gives_an_unknown_user_the_neighbours_of_the_context_items(
    client: AsyncStreamrecClient, sessions_model: int
) -> None:
    user, _ = await cold_user(client, "ctx", k=10)
    rec = await client.recommendations(user, k=10, context="p000150")
    assert rec["model_version"] == sessions_model
    assert (rec["strategy"], rec["algorithm"]) == ("recent_items", "sknn"), rec
    assert set(ids(rec)[:4]) == {"p000142", "p000158", "p000134", "p000166"}
    # the cart's latest product leads; the answer without context is still cold start
    both = await client.recommendations(user, k=10, context="p000050,p000150")
    assert set(ids(both)[:2]) == {"p000042", "p000058"}, both
    assert "cold_start" in (await client.recommendations(user, k=10))["strategy"]


async def test_bad_context_is_a_422_naming_the_field(client: AsyncStreamrecClient) -> None:
    from streamrec_client import ApiError

    with pytest.raises(ApiError) as err:
        await client.recommendations("someone", context="p" * 5000)
    assert err.value.status == 422
    assert "context" in str(err.value.details)
