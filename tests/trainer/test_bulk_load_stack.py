"""``streamrec load`` against the real broker and the trainer's archive: a bulk history goes
through events.v1 like live events, and loading the same file twice archives every event once."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx
import pytest

from streamrec_dev import synthetic
from streamrec_dev.localstack.stack import StackDescription

from ..polling import eventually

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def _load(stack: StackDescription, *args: str) -> dict[str, object]:
    """Run ``streamrec load`` as the CLI runs: a process with the service environment."""
    env = {**os.environ, **stack.env()}
    result = subprocess.run(
        [sys.executable, "-m", "streamrec_trainer.cli", "load", "--no-progress", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return summary


async def _archived(dsn: str, prefix: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        n = await conn.fetchval(
            "SELECT count(*) FROM user_product_interactions WHERE event_id LIKE $1", prefix + "%"
        )
        return int(n)
    finally:
        await conn.close()


async def _duplicates(stack: StackDescription) -> float:
    async with httpx.AsyncClient(timeout=2.0) as http:
        text = (await http.get(stack.urls["trainer"] + "/metrics")).text
    for line in text.splitlines():
        if line.startswith("streamrec_trainer_events_duplicate_total "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def _load_twice(stack: StackDescription, path: Path, prefix: str, n: int) -> None:
    """Load, wait for the archive to hold n rows; load again, wait until the trainer has seen
    every replayed event as a duplicate, and check that there are still n rows."""
    first = await asyncio.to_thread(_load, stack, str(path), "--id-prefix", prefix)
    assert first["events"] == n, first

    async def archived() -> bool:
        return await _archived(stack.postgres_dsn, prefix) >= n

    await eventually(archived, timeout=90, what="the archive to hold the first load", interval=0.2)
    assert await _archived(stack.postgres_dsn, prefix) == n

    before = await _duplicates(stack)
    second = await asyncio.to_thread(_load, stack, str(path), "--id-prefix", prefix)
    assert second["events"] == n, second

    async def replayed() -> bool:
        return await _duplicates(stack) >= before + n

    await eventually(
        replayed, timeout=90, what="the archive to consume the second load", interval=0.2
    )
    assert await _archived(stack.postgres_dsn, prefix) == n


async def test_bulk_load_of_event_lines_is_archived_once(
    stack: StackDescription, tmp_path: Path
) -> None:
    prefix = f"bulk{uuid.uuid4().hex[:8]}"
    shop = synthetic.shop(n_users=60, n_products=50, events_per_user=20, seed=41)
    path = tmp_path / "history.jsonl"
    with path.open("w") as fh:
        for k, event in enumerate(shop.events):
            line = dict(event)
            if k % 2:  # half keep an event_id of their own, half get <prefix>-<line number>
                line["event_id"] = f"{prefix}-own-{k}"
            else:
                line.pop("event_id", None)
            fh.write(json.dumps(line) + "\n")
        invalid = [
            {"user_id": "u1", "event_type": "teleport", "product_id": "p1", "timestamp": 1},
            {"user_id": "u1", "event_type": "view", "product_id": "p1"},  # no event time
        ]
        fh.writelines(json.dumps(line) + "\n" for line in invalid)
        fh.write("not json\n")
    n = len(shop.events)

    dry = await asyncio.to_thread(_load, stack, str(path), "--id-prefix", prefix, "--dry-run")
    assert (dry["events"], dry["invalid"]) == (n, 3)
    await _load_twice(stack, path, prefix, n)

    conn = await asyncpg.connect(stack.postgres_dsn)
    try:
        row = await conn.fetchrow(
            "SELECT min(ts) AS first, max(ts) AS last FROM user_product_interactions "
            "WHERE event_id LIKE $1",
            prefix + "%",
        )
    finally:
        await conn.close()
    assert row is not None
    stamps = sorted(datetime.fromisoformat(e["timestamp"]) for e in shop.events)
    assert (row["first"], row["last"]) == (stamps[0], stamps[-1])  # event time, not load time


async def test_bulk_load_of_online_retail_csv(stack: StackDescription, tmp_path: Path) -> None:
    prefix = f"retail{uuid.uuid4().hex[:8]}"
    path = tmp_path / "retail.csv"
    rows = [
        ("536365", "85123A", "HEART HOLDER", "6", "2010-12-01 08:26:00", "2.55", "17850.0"),
        ("536365", "71053", "METAL LANTERN", "6", "2010-12-01 08:26:00", "3.39", "17850.0"),
        ("536365", "71053", "METAL LANTERN", "6", "2010-12-01 08:26:00", "3.39", "17850.0"),
        ("C536379", "D", "Discount", "-1", "2010-12-01 09:41:00", "27.5", "14527.0"),  # cancel
        ("536414", "22139", "MISSING CUSTOMER", "56", "2010-12-01 11:52:00", "0", ""),
        ("536366", "22633", "HAND WARMER", "6", "2010-12-01 08:28:00", "1.85", "17850.0"),
        ("536367", "84879", "ASSORTED BIRD", "32", "2010-12-01 08:34:00", "1.69", "13047.0"),
    ]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate",
                "UnitPrice", "CustomerID", "Country",
            ]
        )  # fmt: skip
        writer.writerows([(*r, "United Kingdom") for r in rows])
    # the repeated line is a second purchase (its own position in the invoice), not a retry
    await _load_twice(stack, path, prefix, 5)
