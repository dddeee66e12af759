"""Benchmark of the recommender on the whole local stack (broker, Redis, Postgres, 4 services).

1. Exact scoring: a synthetic model of ``--items`` (100k) products, ``--users`` (1M) users and 64
   factors (written with ``artifacts.ModelBundle``, no training) is registered and announced; the
   recommender (2 uvicorn workers, httptools + uvloop) loads it (``--trending-events N``: N events
   of other shoppers go through ingest first, so trending is live). ``wrk`` then sends ``GET
   /v1/recommendations/{user}?k=10`` (``algorithm=auto`` unless ``--algorithm`` names one; random
   users of the model plus 10% unknown users; ``--context-share`` (half) of the requests carry
   ``context=`` with two random products, as a product page with a cart asks) at fixed rates:
   open-loop Poisson arrivals from one schedule (``delay()`` in the Lua script hands each free
   connection the next slot; 64 connections), so the offered load is the target rate whatever the
   latency. Reported per rate: achieved rate, p50/p90/p99/max latency, errors, recommender CPU.
   "Max sustainable" is the highest rate served at >= 97% of the offered load with p99 <= 50 ms.
2. Approximate index: a model of ``--ann-items`` (1M) products; the recommender builds the
   usearch HNSW index (one worker builds and caches it, the other maps it), tunes the search
   expansion to recall@20 >= target against exact search and exports the recall; then the same
   load at ``--ann-rate`` (500) req/s. Recommender memory (RSS of the workers) is reported.

Needs ``wrk`` (Debian package ``wrk``). Run: ``uv run python tests/bench/bench_recommender.py``
(about 8 minutes; ``--quick`` for a shorter run); results in tests/bench/results/recommender.json.
Loopback only; every load phase is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import benchout
import httpx
import loadgen
import psutil

from streamrec_client import StreamrecClient
from streamrec_dev import synthetic
from streamrec_dev.localstack.processes import wait_until
from streamrec_dev.localstack.stack import LocalStack, StackDescription
from streamrec_dev.synthetic_model import activate, next_version, write_bundle

RESULTS = Path(__file__).parent / "results" / "recommender.json"
CONNECTIONS = 64

LUA = r"""
local n_users = tonumber(os.getenv("BENCH_USERS"))
local n_items = tonumber(os.getenv("BENCH_ITEMS"))
local context_share = tonumber(os.getenv("BENCH_CONTEXT_SHARE"))
local counter = 0
init = function(args)
  math.randomseed(os.time() * 1000 + math.floor(os.clock() * 1000000))
end
request = function()
  counter = counter + 1
  local path
  if math.random() < 0.1 then
    path = string.format("/v1/recommendations/new-%d-%d?k=10", math.random(1, 1000000000), counter)
  else
    path = string.format("/v1/recommendations/u%07d?k=10", math.random(0, n_users - 1))
  end
  if math.random() < context_share then
    -- the product on screen and one in the cart, as a product page asks
    path = string.format("%s&context=p%06d,p%06d", path,
      math.random(0, n_items - 1), math.random(0, n_items - 1))
  end
  return wrk.format("GET", path)
end
"""


def recommender_pids(stack: LocalStack) -> list[psutil.Process]:
    return loadgen.tree(stack.proc("recommender").pid)


def rss_mb(procs: list[psutil.Process]) -> dict[str, float]:
    out = {"rss_total_mb": 0.0, "uss_total_mb": 0.0}
    for p in procs:
        try:
            mem = p.memory_full_info()
        except psutil.Error:
            continue
        out["rss_total_mb"] += mem.rss / 2**20
        out["uss_total_mb"] += mem.uss / 2**20
    return {k: round(v, 1) for k, v in out.items()}


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def wait_for_version(url: str, version: int, timeout: float) -> None:
    """Until 20 consecutive answers (both workers) come from ``version``."""
    streak = 0

    def ok() -> bool:
        nonlocal streak
        try:
            r = httpx.get(f"{url}/v1/recommendations/u0000001", params={"k": 5}, timeout=5.0)
        except httpx.HTTPError:
            streak = 0
            return False
        if r.status_code == 200 and r.json().get("model_version") == version:
            streak += 1
        else:
            streak = 0
        return streak >= 20

    wait_until(ok, timeout=timeout, what=f"recommender serving model version {version}")


def run_wrk(url: str, rate: float, seconds: int, n_users: int, script: Path) -> dict[str, Any]:
    env = {"BENCH_USERS": str(n_users)}
    return loadgen.run(
        url, script, rate=rate, seconds=seconds, connections=CONNECTIONS, timeout_s=2.0, env=env
    )


def load_phase(
    stack: LocalStack, url: str, rates: list[float], seconds: int, n_users: int, script: Path
) -> list[dict[str, Any]]:
    rows = []
    procs = recommender_pids(stack)
    for rate in rates:
        cpu0 = loadgen.cpu_seconds(procs)
        load0 = os.getloadavg()[0]
        res = run_wrk(url, rate, seconds, n_users, script)
        res["loadavg_1m_before"] = round(load0, 2)
        cpu = loadgen.cpu_seconds(procs) - cpu0
        res["recommender_cpu_cores"] = round(cpu / (res["duration_us"] / 1e6), 2)
        res["recommender_cpu_ms_per_request"] = round(1000.0 * cpu / max(res["requests"], 1), 3)
        rows.append(res)
        print(
            f"  {rate:>6.0f} req/s offered -> {res['achieved_rps']:>7.1f} achieved, "
            f"p50 {res['p50_ms']:.2f} ms, p99 {res['p99_ms']:.2f} ms, max {res['max_ms']:.1f} ms, "
            f"errors {res['socket_errors'] + res['status_errors']}, "
            f"recommender CPU {res['recommender_cpu_cores']} cores "
            f"({res['recommender_cpu_ms_per_request']} ms/req), load {res['loadavg_1m_before']}",
            flush=True,
        )
        time.sleep(1.0)
    return rows


def sustainable(rows: list[dict[str, Any]], p99_limit_ms: float) -> float | None:
    ok = [r["offered_rps"] for r in rows if loadgen.sustained(r, p99_limit_ms)]
    return max(ok) if ok else None


async def publish(desc: StackDescription, directory: Path, version: int) -> None:
    await activate(
        directory, version, postgres_dsn=desc.postgres_dsn, kafka_bootstrap=desc.kafka_bootstrap
    )


def live_trending(desc: StackDescription, n_events: int, n_items: int) -> dict[str, Any]:
    """Send ``n_events`` events of shoppers outside the benchmark's users (``t`` ids) through
    ingest, so trending is live as in production, then wait until the recommender answers a
    new user from it (``cold_start:trending``, not the model's popularity)."""
    t0 = time.perf_counter()
    shop = synthetic.shop(
        n_users=max(1, n_events // 10), n_products=n_items, events_per_user=10, seed=5,
        days=0.25, end=datetime.now(UTC), user_prefix="t",
    )  # fmt: skip
    with StreamrecClient(
        ingest_url=desc.urls["ingest"], api_key=desc.api_keys["writer"], timeout=30.0
    ) as client:
        sent = client.send_events(shop.events[:n_events])["accepted"]
    url = desc.urls["recommender"]

    def live() -> bool:
        r = httpx.get(f"{url}/v1/recommendations/nobody-{time.monotonic_ns()}", timeout=5.0)
        return r.status_code == 200 and r.json().get("strategy") == "cold_start:trending"

    wait_until(live, timeout=120, what="recommender answering from live trending")
    trending = httpx.get(f"{url}/v1/trending", params={"k": 100}, timeout=5.0).json()
    out = {"events": sent, "trending_top100": len(trending.get("items", []))}
    print(f"live trending: {sent} events sent, {out['trending_top100']} of a top 100 trending, "
          f"after {time.perf_counter() - t0:.1f}s", flush=True)  # fmt: skip
    return out


def run(stack: LocalStack, args: argparse.Namespace, script: Path) -> dict[str, Any]:
    desc = stack.desc
    assert desc is not None
    url = desc.urls["recommender"]
    root = Path(desc.artifacts_uri.removeprefix("file://"))
    results: dict[str, Any] = {}

    version = asyncio.run(next_version(desc.postgres_dsn))
    t0 = time.perf_counter()
    path = write_bundle(
        root, version=version, n_items=args.items, n_users=args.users, factors=64, seed=1
    )
    written = time.perf_counter() - t0
    asyncio.run(publish(desc, path, version))
    wait_for_version(url, version, timeout=300)
    print(f"exact: model v{version} ({args.items} items, {args.users} users) written in "
          f"{written:.1f}s, serving after {time.perf_counter() - t0:.1f}s", flush=True)  # fmt: skip
    if args.trending_events:
        results["live_trending"] = live_trending(desc, args.trending_events, args.items)
    run_wrk(url, 200, 5, args.users, script)  # warm-up
    rows = load_phase(stack, url, args.rates, args.seconds, args.users, script)
    at_1000 = next((r for r in rows if r["offered_rps"] == 1000), None)
    results["exact"] = {
        "items": args.items,
        "users": args.users,
        "factors": 64,
        "rates": rows,
        "max_sustainable_rps": sustainable(rows, 50.0),
        "max_rps_with_p99_le_10ms": sustainable(rows, 10.0),
        "p99_ms_at_1000_rps": at_1000["p99_ms"] if at_1000 else None,
        "target": "p99 <= 10 ms at 1000 req/s",
        "context_share": args.context_share,
        "memory": rss_mb(recommender_pids(stack)),
    }

    if not args.skip_ann:
        version += 1
        t0 = time.perf_counter()
        path = write_bundle(
            root, version=version, n_items=args.ann_items, n_users=args.users, factors=64, seed=2
        )
        asyncio.run(publish(desc, path, version))
        wait_for_version(url, version, timeout=1200)
        ready_s = time.perf_counter() - t0
        text = httpx.get(f"{url}/metrics", timeout=10).text
        recall = metric(text, "streamrec_recommender_ann_recall_at_20")
        print(f"ann: model v{version} ({args.ann_items} items) serving after {ready_s:.0f}s, "
              f"recall@20 {recall}", flush=True)  # fmt: skip
        run_wrk(url, 200, 5, args.users, script)
        rows = load_phase(stack, url, [args.ann_rate], args.seconds, args.users, script)
        results["ann"] = {
            "items": args.ann_items,
            "users": args.users,
            "factors": 64,
            "index": "usearch HNSW, inner product, f16 vectors, exact f32 re-rank",
            "recall_at_20": recall,
            "load_and_build_s": round(ready_s, 1),
            "rates": rows,
            "p99_ms": rows[0]["p99_ms"],
            "target": "p99 <= 20 ms at 500 req/s, recall@20 >= 0.95",
            "memory": rss_mb(recommender_pids(stack)),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--ann-items", type=int, default=1_000_000)
    parser.add_argument("--ann-rate", type=float, default=500.0)
    parser.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")],
                        default=[250.0, 500.0, 750.0, 1000.0, 1250.0, 1500.0, 2000.0])  # fmt: skip
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--skip-ann", action="store_true")
    parser.add_argument("--quick", action="store_true", help="fewer rates, 10 s each")
    parser.add_argument(
        "--context-share",
        type=float,
        default=0.5,
        help="share of requests with context= (two random products of the exact model)",
    )
    benchout.add_args(parser, RESULTS)
    parser.add_argument(
        "--trending-events",
        type=int,
        default=0,
        help="events sent through ingest before the exact phase, so trending is live",
    )
    parser.add_argument(
        "--algorithm",
        default="auto",
        choices=["auto", "als", "hybrid", "itemknn", "content", "popular"],
        help="algorithm= of every request (auto: experiments, tiers and the bandit decide)",
    )
    parser.add_argument(
        "--services",
        default="ingest,stream-processor,trainer,recommender",
        help="services of the stack to start (comma list; recommender is required)",
    )
    args = parser.parse_args()
    if args.quick:
        args.rates, args.seconds = [500.0, 1000.0], 10
    # what the Lua script's context= draws from (products of the exact model, in both models)
    os.environ.update(BENCH_ITEMS=str(args.items), BENCH_CONTEXT_SHARE=str(args.context_share))
    loadgen.prepare()
    with tempfile.TemporaryDirectory(prefix="bench-rec-") as tmp:
        script = Path(tmp) / "rec.lua"
        query = f"k=10&algorithm={args.algorithm}" if args.algorithm != "auto" else "k=10"
        script.write_text(loadgen.script(LUA.replace("?k=10", f"?{query}")))
        # a fresh index cache: the approximate phase measures a real build
        os.environ["STREAMREC_RECOMMENDER__INDEX_CACHE_DIR"] = str(Path(tmp) / "index")
        stack = LocalStack(Path(tmp) / "stack")
        started = time.time()
        stack.start(services=tuple(x for x in args.services.split(",") if x))
        try:
            stack.wait_ready("recommender", path="/healthz")
            results = run(stack, args, script)
        finally:
            stack.stop()
    results["meta"] = {
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{round(psutil.virtual_memory().total / 2**30)} GiB",
        "python": platform.python_version(),
        "load_generator": loadgen.describe(CONNECTIONS),
        "workers": 2,
        "services": args.services,
        "wall_s": round(time.time() - started, 1),
        "command": " ".join(["uv run python tests/bench/bench_recommender.py", *sys.argv[1:]]),
    }
    print(json.dumps(results, indent=2))
    if not args.no_write:
        benchout.write(args.out, results)


if __name__ == "__main__":
    main()
