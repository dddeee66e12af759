"""Stream-processor benchmark on the local stack (broker, Redis, Postgres, ingest, processor).

1. Throughput: with the processor stopped, ``--events`` events (``--users`` users, Zipf-like
   products from a ``--products`` catalogue) are produced straight to events.v1; then one
   worker is started and timed from its first to its last processed event (``/metrics``), with
   a 64-factor model loaded, so every profile update includes a fold-in. Reported: events/s and
   CPU seconds of the worker process.
2. Freshness: ``--rate`` events/s posted to ingest for ``--seconds`` s (open loop,
   ``--requests-per-s`` requests of ``rate / requests-per-s`` events). One event of every request
   belongs to a fresh probe user; Redis keyspace notifications tell when that user's profile key
   is written. Freshness = profile written - 202 received (the target's definition); also
   reported: - request sent (includes ingest and any client backlog), and the processor's own
   histogram (received_at -> visible, bucket upper bounds).
3. Bytes: ``MEMORY USAGE`` of a profile with 200 recent items (and the average over profiles of
   the throughput run).

Run: ``uv run python tests/bench/bench_processor.py`` (about 2-3 minutes);
results in tests/bench/results/processor.json. ``--throughput-only`` runs part 1 alone,
``--freshness-only`` part 2 alone (with the CPU the processor, broker and ingest used meanwhile).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import benchout
import httpx
import numpy as np
import psutil
from redis.asyncio import Redis

from streamrec_dev import synthetic
from streamrec_dev.localstack.stack import LocalStack, StackDescription
from streamrec_shared import kafka, topics
from streamrec_shared.artifacts import AlsArrays, DataWindow, ModelBundle
from streamrec_shared.events import ModelAnnouncement, UserEvent, encode
from streamrec_shared.profile import CATALOG, decode_profile, profile_key
from streamrec_shared.settings import KafkaSettings

RESULTS = Path(__file__).parent / "results" / "processor.json"
CPU_OF = ("stream-processor", "broker", "ingest")
"""Processes whose CPU the freshness run reports (cores while the load is sent)."""
EVENT_TYPES = ("view", "view", "view", "view", "click", "click", "add_to_cart", "purchase")


def as_bytes(value: bytes | str | None) -> bytes:
    return value.encode() if isinstance(value, str) else (value or b"")


def metric_sum(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def metric_value(text: str, name: str) -> float | None:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


async def scrape(url: str) -> str:
    async with httpx.AsyncClient(timeout=2.0) as http:
        return (await http.get(url + "/metrics")).text


def histogram(text: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts ``{le: count}`` of a histogram without labels."""
    out: dict[float, float] = {}
    for m in re.finditer(rf'^{re.escape(name)}_bucket{{le="([^"]+)"}} (\S+)$', text, re.M):
        out[float(m.group(1))] = float(m.group(2))
    return out


def histogram_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """Upper bucket bound below which a fraction ``q`` of the observations in between fall."""
    diff = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = diff[-1][1] if diff else 0.0
    for le, count in diff:
        if total and count >= q * total:
            return le
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


async def install_model(desc: StackDescription, product_ids: list[str], factors: int) -> None:
    """A random 64-factor ALS model over the catalogue, announced on models.v1."""
    rng = np.random.default_rng(5)
    root = Path(desc.artifacts_uri.removeprefix("file://"))
    bundle = ModelBundle(
        version=1,
        created_at=datetime.now(UTC),
        data_window=DataWindow.from_timestamps(0, time.time()),
        als=AlsArrays(
            item_ids=np.asarray(product_ids),
            user_ids=np.asarray(["nobody"]),
            item_factors=(rng.standard_normal((len(product_ids), factors)) * 0.1).astype(
                np.float32
            ),
            user_factors=np.zeros((1, factors), dtype=np.float32),
            regularization=0.05,
            alpha=2.0,
        ),
    )
    bundle.save(root / "v1")
    ann = ModelAnnouncement(
        version=1, artifact_uri=(root / "v1").as_uri(), activated_at=datetime.now(UTC)
    )
    # registry row first: a restarted worker finds the active version before it consumes
    conn = await asyncpg.connect(desc.postgres_dsn)
    try:
        await conn.execute(
            "INSERT INTO model_versions (version, status, is_active, artifact_uri, activated_at)"
            " VALUES (1, 'published', true, $1, now())",
            ann.artifact_uri,
        )
    finally:
        await conn.close()
    producer = kafka.producer(KafkaSettings(bootstrap_servers=desc.kafka_bootstrap,
                                            enable_idempotence=False))  # fmt: skip
    await producer.start()
    try:
        await producer.send_and_wait(topics.MODELS, value=encode(ann))
    finally:
        await producer.stop()


async def wait_model(url: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if metric_value(await scrape(url), "streamrec_processor_model_version") == 1.0:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.25)
    raise TimeoutError("processor did not load the model")


def make_events(n: int, n_users: int, product_ids: list[str], seed: int) -> list[UserEvent]:
    rng = np.random.default_rng(seed)
    ranks = rng.zipf(1.3, size=n) % len(product_ids)
    users = rng.integers(0, n_users, size=n)
    types = rng.integers(0, len(EVENT_TYPES), size=n)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    now = datetime.now(UTC)
    return [
        UserEvent(
            event_id=f"tp-{seed}-{i}",
            user_id=f"bench-{users[i]}",
            event_type=EVENT_TYPES[types[i]],
            product_id=product_ids[ranks[i]],
            timestamp=start + timedelta(seconds=i),
            received_at=now,
        )
        for i in range(n)
    ]


async def throughput(
    stack: LocalStack, args: argparse.Namespace, pids: list[str]
) -> dict[str, Any]:
    desc = stack.desc
    assert desc is not None
    url = desc.urls["stream-processor"]
    stack.stop_process("stream-processor")
    events = make_events(args.events, args.users, pids, seed=1)
    producer = kafka.producer(KafkaSettings(bootstrap_servers=desc.kafka_bootstrap,
                                            enable_idempotence=False), linger_ms=20)  # fmt: skip
    await producer.start()
    try:
        futs = [
            await producer.send(topics.EVENTS, key=e.user_id.encode(), value=encode(e))
            for e in events
        ]
        await producer.flush()
        for f in futs:
            await f
    finally:
        await producer.stop()
    proc = stack.start_service("stream-processor")
    stack.wait_ready("stream-processor", timeout=120)
    ps = psutil.Process(proc.pid)
    text = await scrape(url)
    if metric_value(text, "streamrec_processor_model_version") != 1.0:
        raise RuntimeError("the restarted worker did not load the model before consuming")
    samples: list[tuple[float, float, float]] = []
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        # a fresh process: its counter starts at 0
        count = metric_sum(await scrape(url), "streamrec_processor_events_total")
        cpu = sum(ps.cpu_times()[:2])
        samples.append((time.monotonic(), count, cpu))
        if count >= args.events:
            break
        await asyncio.sleep(0.25)
    started = next(s for s in samples if s[1] > 0)
    first_full = samples[-1]
    # rate over the window from the first processed sample to completion
    elapsed = first_full[0] - started[0]
    processed = first_full[1] - started[1]
    cpu = first_full[2] - started[2]
    return {
        "events": args.events,
        "users": args.users,
        "products": args.products,
        "factors": args.factors,
        "events_per_s": round(processed / elapsed, 1) if elapsed > 0 else None,
        "window_s": round(elapsed, 2),
        "worker_cpu_s": round(cpu, 2),
        "events_per_cpu_s": round(processed / cpu, 1) if cpu > 0 else None,
    }


def cpu_seconds(stack: LocalStack, names: tuple[str, ...]) -> dict[str, float]:
    """User + system CPU seconds so far of the stack's processes ``names``."""
    out: dict[str, float] = {}
    for name in names:
        handle = stack.proc(name).handle()
        out[name] = sum(handle.cpu_times()[:2]) if handle is not None else float("nan")
    return out


async def freshness(stack: LocalStack, args: argparse.Namespace, pids: list[str]) -> dict[str, Any]:
    desc = stack.desc
    assert desc is not None
    redis = Redis.from_url(desc.redis_url)
    await redis.config_set("notify-keyspace-events", "K$")
    pubsub = redis.pubsub()
    await pubsub.psubscribe("__keyspace@0__:" + profile_key("probe-*"))
    written: dict[str, float] = {}
    prefix = len("__keyspace@0__:" + profile_key(""))
    expected: list[int] = []
    all_written = asyncio.Event()

    async def listen() -> None:
        async for msg in pubsub.listen():
            if msg["type"] == "pmessage":
                user = msg["channel"].decode()[prefix:]
                written.setdefault(user, time.perf_counter())
                if expected and len(written) >= expected[0]:
                    all_written.set()

    listener = asyncio.create_task(listen())
    url = desc.urls["stream-processor"]
    text = await scrape(url)
    hist_before = histogram(text, "streamrec_processor_freshness_seconds")
    dur_before = histogram(text, "streamrec_processor_processing_duration_seconds")
    per_request = max(1, args.rate // args.requests_per_s)
    n_requests = args.seconds * args.requests_per_s
    period = 1.0 / args.requests_per_s
    rng = np.random.default_rng(2)
    sent: dict[str, float] = {}
    accepted: dict[str, float] = {}
    errors = 0
    async with desc.client("writer") as client:

        async def post(i: int) -> None:
            nonlocal errors
            probe = f"probe-{i}"
            batch = [
                {
                    "user_id": f"bench-{int(u)}",
                    "event_type": "view",
                    "product_id": pids[int(p)],
                }
                for u, p in zip(
                    rng.integers(0, args.users, per_request - 1),
                    rng.integers(0, len(pids), per_request - 1),
                    strict=True,
                )
            ]
            batch.append({"user_id": probe, "event_type": "click", "product_id": pids[i % 50]})
            sent[probe] = time.perf_counter()
            try:
                await client.send_events(batch)
                accepted[probe] = time.perf_counter()
            except Exception:
                errors += 1

        start = time.perf_counter()
        cpu_before = cpu_seconds(stack, CPU_OF)
        tasks = []
        for i in range(n_requests):
            delay = start + i * period - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(i)))
        await asyncio.gather(*tasks)
        send_s = time.perf_counter() - start
        cpu_after = cpu_seconds(stack, CPU_OF)
    expected.append(len(accepted))
    if len(written) < len(accepted):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_written.wait(), timeout=30)
    listener.cancel()
    await pubsub.punsubscribe()
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    await redis.aclose()
    text = await scrape(url)
    hist_after = histogram(text, "streamrec_processor_freshness_seconds")
    dur_after = histogram(text, "streamrec_processor_processing_duration_seconds")
    from_sent = [(written[u] - sent[u]) * 1000 for u in accepted if u in written]
    from_acc = [max(0.0, (written[u] - accepted[u]) * 1000) for u in accepted if u in written]
    return {
        "target_rate_events_per_s": args.rate,
        "achieved_rate_events_per_s": round(n_requests * per_request / send_s, 1),
        "requests": n_requests,
        "events_per_request": per_request,
        "probes": len(accepted),
        "probes_visible": len(from_sent),
        "request_errors": errors,
        "from_request_sent_ms": {
            "p50": round(percentile(from_sent, 50), 1),
            "p90": round(percentile(from_sent, 90), 1),
            "p99": round(percentile(from_sent, 99), 1),
            "max": round(max(from_sent), 1) if from_sent else None,
        },
        "from_202_ms": {
            "p50": round(percentile(from_acc, 50), 1),
            "p99": round(percentile(from_acc, 99), 1),
        },
        "processor_metric_received_to_visible_s_bucket_upper_bound": {
            "p50": histogram_quantile(hist_before, hist_after, 0.5),
            "p99": histogram_quantile(hist_before, hist_after, 0.99),
        },
        "processor_metric_batch_apply_s_bucket_upper_bound": {
            "p50": histogram_quantile(dur_before, dur_after, 0.5),
            "p99": histogram_quantile(dur_before, dur_after, 0.99),
        },
        "cores_while_sending": {
            name: round((cpu_after[name] - cpu_before[name]) / send_s, 3) for name in CPU_OF
        },
    }


async def memory(desc: StackDescription, pids: list[str]) -> dict[str, Any]:
    async with desc.client("writer") as client:
        events = [
            {"user_id": "mem-heavy", "event_type": "view", "product_id": pids[i]}
            for i in range(250)
        ] + [
            {"user_id": "mem-heavy", "event_type": "purchase", "product_id": pids[i]}
            for i in range(0, 100, 5)
        ]
        await client.send_events(events)
    redis = Redis.from_url(desc.redis_url)
    try:
        key = profile_key("mem-heavy")
        deadline = time.monotonic() + 30
        raw = b""
        while time.monotonic() < deadline:
            raw = as_bytes(await redis.get(key))
            if raw and decode_profile(raw).event_count >= len(events):
                break
            await asyncio.sleep(0.1)
        p = decode_profile(raw)
        heavy = {
            "items": len(p.item_codes),
            "views": len(p.view_codes),
            "purchases": len(p.purchase_codes),
            "categories": len(p.category_codes),
            "factors": len(p.vector),
            "value_bytes": len(raw),
            "memory_usage_bytes": await redis.memory_usage(key),
        }
        sizes: list[int] = []
        items: list[int] = []
        async for k in redis.scan_iter(match=profile_key("bench-*"), count=1000):
            sizes.append(int(await redis.memory_usage(k) or 0))
            items.append(len(decode_profile(as_bytes(await redis.get(k))).item_codes))
            if len(sizes) >= 2000:
                break
        return {
            "profile_200_items": heavy,
            "bench_profiles_sampled": len(sizes),
            "bench_profiles_mean_items": round(statistics.fmean(items), 1) if items else None,
            "bench_profiles_mean_bytes": round(statistics.fmean(sizes), 1) if sizes else None,
            "redis_used_memory_bytes": (await redis.info("memory"))["used_memory"],
        }
    finally:
        await redis.aclose()


async def run(stack: LocalStack, args: argparse.Namespace) -> dict[str, Any]:
    desc = stack.desc
    assert desc is not None
    products = synthetic.catalog(args.products, seed=3)
    pids = [p["product_id"] for p in products]
    async with desc.client() as client:
        for chunk in synthetic.batches(products, 1000):
            await client.put_products(chunk)
    await install_model(desc, pids, args.factors)
    await wait_model(desc.urls["stream-processor"])
    # the catalog is applied before timing starts (a catalog backlog competes with events)
    redis = Redis.from_url(desc.redis_url)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if await redis.hlen(CATALOG) >= len(pids):
                break
            await asyncio.sleep(0.25)
    finally:
        await redis.aclose()
    result: dict[str, Any] = {}
    if not args.freshness_only:
        result["throughput"] = await throughput(stack, args, pids)
        print("throughput:", json.dumps(result["throughput"]), flush=True)
    if args.throughput_only:
        return result
    result["freshness"] = await freshness(stack, args, pids)
    print("freshness:", json.dumps(result["freshness"]), flush=True)
    if args.freshness_only:
        return result
    result["memory"] = await memory(desc, pids)
    print("memory:", json.dumps(result["memory"]), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--products", type=int, default=20_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--requests-per-s", type=int, default=50)
    parser.add_argument("--no-write", action="store_true", help="do not write results JSON")
    parser.add_argument("--out", type=Path, help=f"results JSON (default {RESULTS})")
    parser.add_argument(
        "--throughput-only",
        action="store_true",
        help="skip freshness and bytes; results JSON only with --out (keeps the full file)",
    )
    parser.add_argument(
        "--freshness-only",
        action="store_true",
        help="skip throughput and bytes (before/after comparisons of freshness settings); "
        "results JSON only with --out",
    )
    parser.add_argument("--state-dir", help="keep the stack's state and logs here")
    args = parser.parse_args()
    if args.throughput_only and args.freshness_only:
        parser.error("--throughput-only and --freshness-only exclude each other")
    with tempfile.TemporaryDirectory(prefix="bench-processor-") as tmp:
        stack = LocalStack(Path(args.state_dir or tmp))
        stack.start(services=("ingest", "stream-processor"))
        try:
            result = asyncio.run(run(stack, args))
        finally:
            stack.stop()
    targets = {
        "events_per_s_per_worker": 5000,
        "freshness_p50_ms": 50,
        "freshness_p99_ms": 250,
        "bytes_per_profile_200_items": 2048,
    }
    out = {
        "benchmark": "processor",
        "command": " ".join(["uv run python tests/bench/bench_processor.py", *sys.argv[1:]]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
            "note": (
                "2 cores shared by the load, the stack and the worker; "
                "other work shows in the load average"
            ),
        },
        "targets": targets,
        **result,
    }
    partial = args.throughput_only or args.freshness_only
    path = args.out if args.out or partial else RESULTS
    if path is not None and not args.no_write:
        benchout.write(path, out)
    if args.freshness_only:
        f = result["freshness"]
        print(
            f"freshness (202 -> visible) p50 {f['from_202_ms']['p50']} ms p99 "
            f"{f['from_202_ms']['p99']} ms at {f['achieved_rate_events_per_s']} events/s; "
            f"cores {f['cores_while_sending']}"
        )
        return
    t = result["throughput"]
    if args.throughput_only:
        print(f"throughput {t['events_per_s']} events/s ({t['events_per_cpu_s']} per CPU s)")
        return
    f, m = result["freshness"], result["memory"]
    print(
        f"throughput {t['events_per_s']} events/s per worker ({t['events_per_cpu_s']} per CPU s); "
        f"freshness (202 -> visible) p50 {f['from_202_ms']['p50']} ms p99 "
        f"{f['from_202_ms']['p99']} ms at {f['achieved_rate_events_per_s']} events/s; "
        f"{m['profile_200_items']['memory_usage_bytes']} B per 200-item profile"
    )


if __name__ == "__main__":
    main()
