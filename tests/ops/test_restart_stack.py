"""``make up``, ``make down``, ``make up`` in one state directory, as a user runs them, then a
crash (every process SIGKILLed, ``stack.json`` left behind) and ``make up`` once more: each start
comes up on the data of the one before (Postgres rows, the model registry, the artifacts)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from streamrec_dev.localstack.processes import kill
from streamrec_dev.localstack.stack import StackDescription

pytestmark = [pytest.mark.stack, pytest.mark.slow]

STACK_CLI = str(Path(sys.executable).parent / "streamrec-stack")


def _stack(state: Path, *args: str) -> str:
    result = subprocess.run(
        [STACK_CLI, "--dir", str(state), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"streamrec-stack {' '.join(args)}:\n{result.stderr[-3000:]}"
    return result.stdout


async def _products(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM products"))
    finally:
        await conn.close()


def _snapshot(state: Path) -> dict[str, Any]:
    desc = StackDescription.load(state)
    models = httpx.get(desc.urls["trainer"] + "/v1/models", timeout=10).json()
    versions = models["models"]
    rec = httpx.get(desc.urls["recommender"] + "/v1/recommendations/u00001?k=5", timeout=10)
    return {
        "products": asyncio.run(_products(desc.postgres_dsn)),
        "versions": sorted(v["version"] for v in versions),
        "active": [v["version"] for v in versions if v["active"]],
        "served_by": rec.json()["model_version"],
    }


def test_up_down_up_and_up_after_a_crash_keep_the_data(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _stack(state, "up", "--demo", "--free-ports")
    try:
        before = _snapshot(state)
        assert before["products"] > 0
        assert len(before["active"]) == 1
        assert before["served_by"] == before["active"][0]

        _stack(state, "down")
        assert not (state / "stack.json").exists()
        _stack(state, "up", "--free-ports")
        assert _snapshot(state) == before

        # a crash: every process killed at once, the description stays behind
        for proc in StackDescription.load(state).procs:
            kill(proc)
        assert (state / "stack.json").exists()
        _stack(state, "up", "--free-ports")
        assert _snapshot(state) == before
    finally:
        _stack(state, "down")
