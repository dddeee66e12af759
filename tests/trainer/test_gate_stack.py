"""Champion/challenger on one split against the real stack: a retrain with more data of the same
shop publishes, a degenerate candidate is rejected, both figures are in ``GET /v1/models``, with
hybrid's member weights as the trainer chose them and the arms' paired standard errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from streamrec_client import AsyncStreamrecClient
from streamrec_dev import synthetic
from streamrec_dev.localstack.stack import StackDescription

from ..archive import send_archived

pytestmark = [pytest.mark.stack, pytest.mark.slow]

# only this shop's period: other tests post events at other times into the same archive
WINDOW = {"window_days": 40.0}


async def _job(client: AsyncStreamrecClient, params: dict[str, Any]) -> Any:
    job_id = (await client.request("POST", "trainer", "/v1/train", json={"params": params}))[
        "job_id"
    ]
    return await client.wait_for_job(job_id, timeout=300)


def _live(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "timestamp"} for e in events]


async def test_retrain_with_more_data_publishes_and_a_worse_candidate_is_rejected(
    stack: StackDescription, client: AsyncStreamrecClient
) -> None:
    shop = synthetic.shop(
        n_users=200,
        n_products=150,
        events_per_user=35,
        seed=57,
        end=datetime.now(UTC),
        user_prefix="gate",
    )
    await client.put_products(shop.products)
    # events are in time order: three parts of the shop's history arrive one after the other
    cut, cut2 = int(len(shop.events) * 0.6), int(len(shop.events) * 0.8)
    await send_archived(client, stack.postgres_dsn, shop.events[:cut])
    # a baseline of this shop (the session stack holds other tests' models)
    first = await _job(client, {**WINDOW, "gate_tolerance": 1.0})
    assert first["status"] == "published", first

    # the later parts arrive live (event time = receive time, after every model so far)
    await send_archived(client, stack.postgres_dsn, _live(shop.events[cut:cut2]))
    second = await _job(client, WINDOW)  # default tolerance: decided on one split
    gate = second["metrics"]["gate"]
    assert second["status"] == "published", gate
    assert gate["against"] == first["model_version"]
    assert gate["decision"] in ("not_worse", "insufficient_evidence"), gate
    assert set(gate["comparison"]["als"]["champion"]) >= {"ndcg@5", "ndcg@10", "ndcg@20"}
    # EASE is published (its sparsified weights) and scored from the champion's bundle too
    assert set(gate["comparison"]["ease"]["champion"]) >= {"ndcg@5", "ndcg@10", "ndcg@20"}
    assert second["metrics"]["champion"]["version"] == first["model_version"]

    # the same data again: nothing the champion has not seen, nothing to decide on
    again = await _job(client, WINDOW)
    assert again["status"] == "rejected", again["metrics"]["gate"]
    assert again["metrics"]["gate"]["decision"] == "insufficient_evidence"
    assert again["metrics"]["champion"]["split"]["restricted_to_unseen"] is True

    # more data, but one factor and one iteration: worse than the champion on the same split
    await send_archived(client, stack.postgres_dsn, _live(shop.events[cut2:]))
    bad = await _job(client, {**WINDOW, "factors": 1, "iterations": 1, "refit_iterations": 0})
    bad_gate = bad["metrics"]["gate"]
    assert bad["status"] == "rejected", bad_gate
    assert bad_gate["decision"] == "worse", bad_gate
    assert bad_gate["candidate"] < bad_gate["champion"]

    models = await client.request("GET", "trainer", "/v1/models")
    assert models["active_version"] == second["model_version"]
    shown = {m["version"]: m for m in models["models"]}
    assert shown[bad["model_version"]]["gate"]["champion"] == bad_gate["champion"]
    assert shown[second["model_version"]]["gate"]["against"] == first["model_version"]
    # the evaluation shows hybrid's member weights as chosen on the holdout, and how surely the
    # holdout ranks the arms (the auto policy's prior strength)
    evaluation = shown[second["model_version"]]["metrics"]
    chosen = evaluation["hybrid_weights"]
    assert chosen["source"] in ("learned", "default")
    assert set(chosen["weights"]) == {"als", "itemknn", "content", "ease", "popular"}
    assert set(evaluation["paired_se"]["ndcg@20"]) >= {"als", "hybrid", "ease"}
