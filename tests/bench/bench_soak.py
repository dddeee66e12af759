"""Soak benchmark: mixed load at half the rated throughput for a long time; does anything grow?

A local stack (every service, the trainer retraining by itself every 10 minutes) gets a demo shop
(2,000 users, 2,000 products, one trained model), then ``wrk`` (tests/bench/loadgen.py, open-loop
Poisson arrivals) sends six request kinds at once, each at ``--scale`` (0.5) of its rated rate
(``RATED``: the design's targets, recommender 1,000 req/s split over its three reads, ingest
2,000 single events/s and 100 batches of 100/s, search 100 req/s) for ``--minutes`` (30), in
windows of ``--sample-s`` (30) seconds. After each window it samples: the resident memory of
every process of the stack (with its children: uvicorn workers, Postgres backends), Redis's key
count and used memory, and each request kind's p99 and errors in that window.

The report compares the first third of the windows with the last third (memory, keys, p99) and
sums the errors. Target: flat memory (growth < 10% between the thirds), 0 errors.
Users come from a fixed pool of 5,000 ids (2,000 known), so the profiles' key count levels off
once the pool is covered; growth after that is a leak.

Run: ``python3 -m uv run --frozen python tests/bench/bench_soak.py [--minutes 30] [--scale 0.5]
[--durable-broker]`` (needs ``wrk``; ``make bench SOAK_MINUTES=5`` shortens it there;
``--durable-broker`` runs the stack on the durable local broker instead of the in-memory one).
Results: tests/bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import benchout
import loadgen
import psutil
import redis

from streamrec_dev.localstack import demo
from streamrec_dev.localstack.stack import LocalStack

RESULTS = Path(__file__).parent / "results" / "soak.json"
RATED = {
    # kind: (service, rated requests/s, connections)
    "recommendations": ("recommender", 600.0, 32),
    "recommendations_context": ("recommender", 200.0, 16),
    "trending": ("recommender", 200.0, 16),
    "events_single": ("ingest", 2000.0, 64),
    "events_batch_100": ("ingest", 100.0, 16),
    "search": ("recommender", 100.0, 8),
}
N_USERS, N_KNOWN, N_PRODUCTS = 5000, 2000, 2000
MAX_GROWTH = 0.10

LUA = (
    loadgen.EVENTS_LUA
    + r"""
local kind = os.getenv("BENCH_KIND")
local n_users = tonumber(os.getenv("BENCH_USERS"))
local n_products = tonumber(os.getenv("BENCH_PRODUCTS"))
local words = {"red", "blue", "kitchen", "garden", "eco", "classic", "item", "books", "toys"}

local function user() return string.format("u%05d", math.random(0, n_users - 1)) end
local function product() return string.format("p%06d", math.random(0, n_products - 1)) end
local function event()
  return string.format('{"user_id":"%s","event_type":"%s","product_id":"%s"}',
    user(), event_types[math.random(1, 8)], product())
end

init = function(args)
  math.randomseed(os.time() * 1000 + math.floor(os.clock() * 1000000))
  if kind == "events_single" then
    event_bodies = make_event_bodies(64, 1, event)
  elseif kind == "events_batch_100" then
    event_bodies = make_event_bodies(64, 100, event)
  end
end

request = function()
  if kind == "events_single" or kind == "events_batch_100" then
    return post_events()
  elseif kind == "recommendations" then
    return wrk.format("GET", "/v1/recommendations/" .. user() .. "?k=10")
  elseif kind == "recommendations_context" then
    return wrk.format("GET", "/v1/recommendations/" .. user() .. "?k=10&context="
      .. product() .. "," .. product())
  elseif kind == "trending" then
    return wrk.format("GET", "/v1/trending?k=10")
  else
    return wrk.format("GET", "/v1/products/search?k=20&q=" .. words[math.random(1, #words)])
  end
end
"""
)


def rss_by_process(stack: LocalStack) -> dict[str, float]:
    """MB resident per process of the stack, each with its children."""
    assert stack.desc is not None
    out = {}
    for proc in stack.desc.procs:
        try:
            members = loadgen.tree(proc.pid)
        except psutil.Error:
            continue
        total = 0
        for m in members:
            try:
                total += m.memory_info().rss
            except psutil.Error:
                continue
        out[proc.name] = round(total / 2**20, 1)
    return out


def redis_sample(url: str) -> dict[str, int]:
    client = redis.Redis.from_url(url)
    try:
        info = client.info("memory")
        return {"keys": int(client.dbsize()), "used_memory_bytes": int(info["used_memory"])}
    finally:
        client.close()


def window(
    stack: LocalStack, script: Path, rates: dict[str, float], seconds: int
) -> dict[str, dict[str, Any]]:
    """Every request kind at its rate for ``seconds``, at once; wrk's summary per kind."""
    assert stack.desc is not None
    desc = stack.desc

    def one(kind: str) -> dict[str, Any]:
        service, _, connections = RATED[kind]
        env = {
            "BENCH_KIND": kind,
            "BENCH_KEY": desc.api_keys["writer"],
            "BENCH_USERS": str(N_USERS),
            "BENCH_PRODUCTS": str(N_PRODUCTS),
        }
        return loadgen.run(
            desc.urls[service],
            script,
            rate=rates[kind],
            seconds=seconds,
            connections=connections,
            env=env,
        )

    with concurrent.futures.ThreadPoolExecutor(len(rates)) as pool:
        futures = {kind: pool.submit(one, kind) for kind in rates}
        return {kind: f.result() for kind, f in futures.items()}


def growth(samples: list[dict[str, Any]], pick: Any) -> dict[str, float | None]:
    """Mean of ``pick(sample)`` over the first and the last third, and the relative change."""
    third = max(1, len(samples) // 3)
    first = [pick(s) for s in samples[:third]]
    last = [pick(s) for s in samples[-third:]]
    a, b = statistics.fmean(first), statistics.fmean(last)
    return {
        "first_third": round(a, 2),
        "last_third": round(b, 2),
        "growth": round((b - a) / a, 4) if a else None,
    }


def run(stack: LocalStack, args: argparse.Namespace, script: Path) -> dict[str, Any]:
    assert stack.desc is not None
    desc = stack.desc
    started = time.perf_counter()
    shop = demo.load_sync(desc, n_users=N_KNOWN, n_products=N_PRODUCTS, events_per_user=20)
    print(f"demo shop loaded and trained in {time.perf_counter() - started:.0f} s: "
          f"{shop['job'].get('status')}", flush=True)  # fmt: skip
    rates = {kind: rated * args.scale for kind, (_, rated, _) in RATED.items()}
    windows = max(3, round(args.minutes * 60 / args.sample_s))
    samples: list[dict[str, Any]] = []
    for i in range(windows):
        load0 = os.getloadavg()[0]
        results = window(stack, script, rates, args.sample_s)
        sample = {
            "window": i,
            "at_s": round((i + 1) * args.sample_s),
            "loadavg_1m_before": round(load0, 2),
            "rss_mb": rss_by_process(stack),
            "redis": redis_sample(desc.redis_url),
            "endpoints": {
                kind: {
                    "achieved_rps": r["achieved_rps"],
                    "p99_ms": r["p99_ms"],
                    "errors": r["socket_errors"] + r["status_errors"],
                }
                for kind, r in results.items()
            },
        }
        samples.append(sample)
        worst = max(sample["endpoints"].items(), key=lambda kv: kv[1]["p99_ms"])
        print(
            f"window {i + 1}/{windows}: RSS {sum(sample['rss_mb'].values()):.0f} MB, Redis "
            f"{sample['redis']['keys']} keys {sample['redis']['used_memory_bytes'] / 2**20:.0f} MB,"
            f" worst p99 {worst[1]['p99_ms']:.1f} ms ({worst[0]}), errors "
            f"{sum(e['errors'] for e in sample['endpoints'].values())} "
            f"(load {load0:.1f})",
            flush=True,
        )
    names = sorted(samples[0]["rss_mb"])
    report = {
        "rss_mb": {n: growth(samples, lambda s, n=n: s["rss_mb"].get(n, 0.0)) for n in names},
        "redis_keys": growth(samples, lambda s: s["redis"]["keys"]),
        "redis_used_memory_bytes": growth(samples, lambda s: s["redis"]["used_memory_bytes"]),
        "p99_ms": {k: growth(samples, lambda s, k=k: s["endpoints"][k]["p99_ms"]) for k in rates},
        "errors": {k: sum(s["endpoints"][k]["errors"] for s in samples) for k in rates},
    }
    flat = all(
        (g["growth"] or 0.0) < MAX_GROWTH
        for g in [*report["rss_mb"].values(), report["redis_used_memory_bytes"]]
    )
    no_errors = sum(report["errors"].values()) == 0
    return {
        "benchmark": "soak: mixed load at a share of the rated throughput, memory and p99 drift",
        "command": " ".join(sys.argv),
        "when": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "load_generator": "one wrk per request kind, -t1, open-loop Poisson schedule",
        "minutes": args.minutes,
        "sample_s": args.sample_s,
        "scale_of_rated": args.scale,
        "broker_log": "durable (s3 on moto)" if args.durable_broker else "memory",
        "rates_rps": rates,
        "rated_rps": {kind: rated for kind, (_, rated, _) in RATED.items()},
        "users": {"pool": N_USERS, "known": N_KNOWN},
        "products": N_PRODUCTS,
        "target": f"memory growth < {MAX_GROWTH:.0%} first third -> last third, 0 errors",
        "target_met": flat and no_errors,
        "report": report,
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "30"))
    )
    parser.add_argument("--scale", type=float, default=0.5, help="share of the rated rates")
    parser.add_argument("--sample-s", type=int, default=30)
    parser.add_argument(
        "--durable-broker",
        action="store_true",
        help="the broker's log in durable storage (LocalStack durable_broker), not in memory",
    )
    benchout.add_args(parser, RESULTS)
    args = parser.parse_args()
    loadgen.prepare()
    # retrain by itself every 10 minutes (model swaps belong in a soak), not per event count
    os.environ.setdefault("STREAMREC_TRAINING__AFTER_EVENTS", "0")
    with loadgen.on_stack("soak", LUA, durable_broker=args.durable_broker) as (stack, script):
        results = run(stack, args, script)
    print(json.dumps(results["report"], indent=2))
    print(f"target ({results['target']}): {'met' if results['target_met'] else 'MISSED'}")
    if not args.no_write:
        benchout.write(args.out, results)


if __name__ == "__main__":
    main()
