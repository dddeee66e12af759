"""Microbenchmark: what ingest's read-your-writes push costs per single-event request.

In one process on uvloop, against a real Redis of its own: ``RecentWriter.remember`` for one
event, as the events route awaits it after the broker's acknowledgement. Two arrival patterns:

- ``alone``: one request at a time (every push is its own pipeline and round trip);
- ``together``: requests completing in groups of ``--group`` in the same event-loop turn, as
  the producer's acknowledgement of one batch completes many single-event requests at once
  under load (their pushes share one pipeline).

Reported per event: CPU microseconds of the process (``time.process_time``, which includes the
Redis client's work but not Redis' own) and wall microseconds per request. Compare with the
0.21-0.31 ms of ingest CPU per single-event request (README, BENCHMARKS / Ingest).

Run: ``uv run python tests/bench/micro_recent_writes.py`` (prints; ``--out`` writes JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
from pydantic import SecretStr

from streamrec_dev.localstack import infra
from streamrec_dev.localstack.processes import free_port, stop
from streamrec_ingest.recent import RecentWriter
from streamrec_shared.events import EventIn
from streamrec_shared.settings import RedisSettings


def _events(n: int) -> list[EventIn]:
    return [
        EventIn.model_validate(
            {"user_id": f"u{i % 5000}", "event_type": "click", "product_id": f"p{i % 977}"}
        )
        for i in range(n)
    ]


async def _measure(url: str, n: int, group: int) -> dict[str, Any]:
    writer = RecentWriter.connect(RedisSettings(url=SecretStr(url)))
    events = _events(n)
    try:
        for e in events[:200]:  # warm the connection pool
            await writer.remember([e], 0.0)
        cpu, wall = time.process_time(), time.perf_counter()
        for start in range(0, n, group):
            chunk = events[start : start + group]
            await asyncio.gather(*(writer.remember([e], time.time()) for e in chunk))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await writer.close()
    return {
        "group": group,
        "events": n,
        "cpu_us_per_event": round(cpu / n * 1e6, 1),
        "wall_us_per_event": round(wall / n * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--group", type=int, default=20)
    parser.add_argument("--out")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="micro-recent-") as tmp:
        port = free_port()
        proc = infra.start_redis(port, Path(tmp) / "data", Path(tmp))
        try:
            url = f"redis://127.0.0.1:{port}/0"
            results = {
                "alone": uvloop.run(_measure(url, args.events, 1)),
                "together": uvloop.run(_measure(url, args.events, args.group)),
            }
        finally:
            stop(proc)
    for name, r in results.items():
        print(f"{name:>9} (groups of {r['group']}): {r['cpu_us_per_event']} us CPU, "
              f"{r['wall_us_per_event']} us wall per event")  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
