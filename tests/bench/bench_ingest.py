"""Benchmark of the ingest gateway on the local stack: events/s accepted through HTTP.

Two load shapes at fixed offered loads: ``POST /v1/events`` with batches of 100 events, and with
single events. ``wrk`` (one thread, 64 connections; Debian package ``wrk``) sends exactly
rate x seconds requests at uniformly random times (a Poisson schedule conditioned on its count:
``loadgen``; ``delay()`` in the Lua script waits for the next scheduled send time, read from the
monotonic clock), so the offered load does not shrink with the latency
while a connection is free; every phase is bounded in time (and so in count). Bodies
are prepared once in Lua (64 distinct batches, 256 distinct single events, 100 users per batch,
no client event_id: ingest generates one per event, as for a client that sends none).
A 202 means the broker acknowledged every event of the request (acks=all).

Before each level the bench waits until the stack is idle again (the processor, the archive and the
attribution consumer have caught up with the previous level), so a level is not measured on the
previous one's backlog.

Reported per rate: achieved requests/s and events/s (202 only), p50/p90/p99/max latency, non-2xx
answers and socket errors, CPU cores used by ingest and by the broker during the phase.
"Max sustainable" is the highest rate served at >= 97% of the offered load, without errors,
with p99 <= 50 ms. wrk measures latency from when a request is written; a connection that
falls behind its schedule sends late (coordinated omission is not corrected), so at overload
the achieved rate, not the latency, tells the story.

Two scenarios: ``whole`` (broker, Redis, Postgres, ingest, trainer, processor, recommender: the
trainer archives and the processor applies every accepted event on the same two cores, as on one
box in production; the trainer's retraining triggers are off unless ``--triggers``: the local
stack's demo trigger retrains after every 20k archived events, every 2 s at this load; the
processor, the trainer and Postgres run at the local stack's lower CPU priority, see
``streamrec_dev.localstack.stack.BACKGROUND_NICE``, ``STREAMREC_LOCAL_NICE=0`` to compare) and
``alone`` (the gateway with the broker, Redis and Postgres only). Each load shape of a scenario
runs on its own fresh stack (warm-up, then its levels): the local broker (Tansu's memory store)
keeps every record and has no retention (its DeleteRecords is unimplemented), and it answers each
fetch by listing a partition's stored batches, so its CPU per fetch grows with the log it holds; on
a real Kafka a fetch costs the same whatever the log's size. The records the broker holds are
recorded per level (``broker_log_records_before``), and ``--one-stack`` runs both shapes on one
stack, singles after batches, to show that effect.

Run: ``uv run python tests/bench/bench_ingest.py`` (about 6 minutes; ``--quick`` about 3);
results in tests/bench/results/ingest.json. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
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
from aiokafka import AIOKafkaConsumer, TopicPartition

from streamrec_dev.localstack.stack import BACKGROUND, SERVICES, LocalStack, background_nice
from streamrec_shared import topics

RESULTS = Path(__file__).parent / "results" / "ingest.json"
CONNECTIONS = 64
MAX_P99_MS = 50.0

LUA = (
    loadgen.EVENTS_LUA
    + r"""
local batch = tonumber(os.getenv("BENCH_BATCH"))

local function event()
  local u, p, t = math.random(0, 99999), math.random(0, 9999), event_types[math.random(1, 8)]
  local extra = ""
  if t == "purchase" then extra = ',"value":1,"price":19.99' end
  return string.format(
    '{"user_id":"bu%06d","event_type":"%s","product_id":"bp%05d"%s}', u, t, p, extra)
end

init = function(args)
  math.randomseed(os.time() * 1000 + math.floor(os.clock() * 1000000))
  local n = 256
  if batch > 1 then n = 64 end
  event_bodies = make_event_bodies(n, batch, event)
end

request = post_events
"""
)


def accepted_total(url: str) -> float | None:
    """Sum of streamrec_ingest_events_accepted_total (one worker's registry)."""
    text = httpx.get(f"{url}/metrics", timeout=5.0).text
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("streamrec_ingest_events_accepted_total{")
    ]
    return sum(values) if values else None


def broker_log_records(bootstrap: str) -> int:
    """Records held in events.v1 (the sum of its end offsets: the local broker deletes none)."""

    async def count() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            parts = consumer.partitions_for_topic(topics.EVENTS) or set()
            tps = [TopicPartition(topics.EVENTS, p) for p in parts]
            return sum((await consumer.end_offsets(tps)).values())
        finally:
            await consumer.stop()

    return asyncio.run(count())


def run_wrk(
    url: str, key: str, batch: int, rate: float, seconds: int, script: Path
) -> dict[str, Any]:
    env = {"BENCH_BATCH": str(batch), "BENCH_KEY": key}
    res = loadgen.run(url, script, rate=rate, seconds=seconds, connections=CONNECTIONS, env=env)
    ok = res["requests"] - res["status_errors"]
    res["accepted_events_per_s"] = round(ok * batch / (res["duration_us"] / 1e6), 1)
    return res


def load_phase(
    stack: LocalStack,
    url: str,
    key: str,
    batch: int,
    rates: list[float],
    seconds: int,
    script: Path,
    single_worker: bool,
) -> list[dict[str, Any]]:
    rows = []
    assert stack.desc is not None
    procs = {p.name: loadgen.tree(p.pid) for p in stack.desc.procs if p.alive()}
    for rate in rates:
        settled_s = settle(procs)
        log_records = broker_log_records(stack.desc.kafka_bootstrap)
        cpu0 = {name: loadgen.cpu_seconds(ps) for name, ps in procs.items()}
        wrk0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        machine = psutil.cpu_times()
        load0 = os.getloadavg()[0]
        before = accepted_total(url) if single_worker else None
        res = run_wrk(url, key, batch, rate, seconds, script)
        duration = res["duration_us"] / 1e6
        after = accepted_total(url) if single_worker else None
        idle = (psutil.cpu_times().idle - machine.idle) / duration
        wrk1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cores = {
            name: round((loadgen.cpu_seconds(ps) - cpu0[name]) / duration, 2)
            for name, ps in procs.items()
        }
        cores["wrk"] = round(
            (wrk1.ru_utime + wrk1.ru_stime - wrk0.ru_utime - wrk0.ru_stime) / duration, 2
        )
        busy = (os.cpu_count() or 2) - idle
        cores["outside_the_benchmark"] = round(max(0.0, busy - sum(cores.values())), 2)
        res["batch_size"] = batch
        res["settled_before_s"] = settled_s
        res["broker_log_records_before"] = log_records
        res["loadavg_1m_before"] = round(load0, 2)
        res["cpu_cores"] = cores
        res["ingest_cpu_cores"] = cores.get("ingest", 0.0)
        res["broker_cpu_cores"] = cores.get("broker", 0.0)
        res["machine_idle_cores"] = round(idle, 2)
        # what a request costs the gateway, whatever else the machine is doing
        res["ingest_cpu_ms_per_request"] = round(
            1000 * res["ingest_cpu_cores"] / max(res["achieved_rps"], 1e-9), 3
        )
        if before is not None and after is not None:
            res["accepted_events_metric"] = int(after - before)
        rows.append(res)
        print(
            f"  batch {batch:>3}: {rate:>6.0f} req/s offered -> {res['achieved_rps']:>7.1f} "
            f"req/s, {res['accepted_events_per_s']:>8.0f} events/s accepted, "
            f"p50 {res['p50_ms']:.2f} ms, p99 {res['p99_ms']:.2f} ms, max {res['max_ms']:.1f} ms,"
            f" non-2xx {res['status_errors']}, socket errors {res['socket_errors']}, "
            f"ingest {res['ingest_cpu_cores']} / broker {res['broker_cpu_cores']} cores "
            f"({res['ingest_cpu_ms_per_request']:.2f} ms ingest CPU per request), "
            f"machine idle {res['machine_idle_cores']} cores; cores: {cores}; "
            f"settled {settled_s} s before; broker holds {log_records} records",
            flush=True,
        )
    return rows


def settle(procs: dict[str, list[psutil.Process]], timeout: float = 30.0) -> float:
    """Wait until the stack is nearly idle (< 0.3 cores for 2 s; idle is ~0.1): the consumers
    of the previous level's events (processor, archive, attribution) have caught up, so each
    level is measured on its own load, not the backlog of the one before. At most ``timeout``;
    returns the seconds waited (recorded per level)."""
    started = time.monotonic()
    quiet = 0
    while time.monotonic() - started < timeout and quiet < 2:
        before = sum(loadgen.cpu_seconds(ps) for ps in procs.values())
        time.sleep(1.0)
        used = sum(loadgen.cpu_seconds(ps) for ps in procs.values()) - before
        quiet = quiet + 1 if used < 0.3 else 0
    return round(time.monotonic() - started, 1)


def sustainable(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    good = [r for r in rows if loadgen.sustained(r, MAX_P99_MS)]
    return max(good, key=lambda r: r["offered_rps"]) if good else None


def run_scenario(
    services: tuple[str, ...],
    workers: int,
    batch_rates: list[float],
    single_rates: list[float],
    seconds: int,
    tmp: Path,
    script: Path,
    one_stack: bool,
    triggers: bool = False,
) -> dict[str, Any]:
    """Both load shapes at every rate: each on a fresh stack (ingest + ``services``) after a
    warm-up, or with ``one_stack`` one after the other on the same stack; ``triggers``: the
    trainer's local-stack retraining triggers on (see ``main``)."""
    shapes = [(100, batch_rates), (1, single_rates)]
    runs = [shapes] if one_stack else [[shape] for shape in shapes]
    rows: dict[int, list[dict[str, Any]]] = {}
    for n, run in enumerate(runs):
        stack = LocalStack(
            tmp / ("stack-" + "-".join(services or ("alone",)) + f"-{n}"), triggers=triggers
        )
        started = time.monotonic()
        try:
            desc = stack.start(services=services)
            stack.start_service("ingest", extra_env={"STREAMREC_HTTP__WORKERS": str(workers)})
            stack.wait_ready("ingest", timeout=120)
            print(f"stack up in {time.monotonic() - started:.0f}s: ingest + {services}", flush=True)
            url, key = desc.urls["ingest"], desc.api_keys["writer"]
            single_worker = workers == 1
            print("warm-up", flush=True)
            load_phase(stack, url, key, 100, [50.0], 3, script, False)
            load_phase(stack, url, key, 1, [300.0], 3, script, False)
            for batch, rates in run:
                print("batches of 100 events" if batch > 1 else "single events", flush=True)
                rows[batch] = load_phase(
                    stack, url, key, batch, rates, seconds, script, single_worker
                )
        finally:
            stack.stop()
    batched, single = rows[100], rows[1]
    best_batch, best_single = sustainable(batched), sustainable(single)
    return {
        "services": ["ingest", *services],
        "ingest_workers": workers,
        "stacks": "one for both load shapes" if one_stack else "a fresh one per load shape",
        "batched_100": batched,
        "single": single,
        "max_sustainable": {
            "batched_events_per_s": best_batch["accepted_events_per_s"] if best_batch else None,
            "batched_p99_ms": best_batch["p99_ms"] if best_batch else None,
            "single_requests_per_s": best_single["achieved_rps"] if best_single else None,
            "single_p99_ms": best_single["p99_ms"] if best_single else None,
        },
        "peak_achieved": {
            "batched_events_per_s": max(r["accepted_events_per_s"] for r in batched),
            "single_requests_per_s": max(r["achieved_rps"] for r in single),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="per load level")
    parser.add_argument("--batch-rates", default="80,100,120,150", help="requests/s, batch 100")
    parser.add_argument("--single-rates", default="1000,1500,2000,2500", help="requests/s")
    parser.add_argument(
        "--scenarios",
        default="whole,alone",
        help="whole: every service of the stack runs; alone: only ingest (and the broker, "
        "Redis, Postgres)",
    )
    parser.add_argument("--workers", type=int, default=1, help="ingest uvicorn workers")
    parser.add_argument("--quick", action="store_true", help="5 s per level, fewer levels")
    parser.add_argument(
        "--one-stack",
        action="store_true",
        help="both load shapes on one stack per scenario (singles after batches) instead of a "
        "fresh stack per shape",
    )
    parser.add_argument(
        "--triggers",
        action="store_true",
        help="keep the local stack's retraining triggers on (a retrain after every 20k archived "
        "events: every 2 s at 10k events/s, on the same two cores as ingest); off by default, "
        "as production runs the trainer on its own CPUs",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    loadgen.prepare()
    seconds = 5 if args.quick else args.seconds
    batch_rates = [float(r) for r in args.batch_rates.split(",")]
    single_rates = [float(r) for r in args.single_rates.split(",")]
    if args.quick:
        batch_rates, single_rates = batch_rates[-2:], single_rates[-2:]
    others = tuple(s for s in SERVICES if s != "ingest")
    scenarios = {"whole": others, "alone": ()}

    load_before = os.getloadavg()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        script = Path(tmp) / "ingest.lua"
        script.write_text(loadgen.script(LUA))
        for name in args.scenarios.split(","):
            print(f"== scenario {name}", flush=True)
            results[name] = run_scenario(
                scenarios[name],
                args.workers,
                batch_rates,
                single_rates,
                seconds,
                Path(tmp),
                script,
                args.one_stack,
                args.triggers,
            )

    result = {
        "benchmark": "ingest",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "note": "2 cores shared by the load generator, the broker, Redis, Postgres and "
            "every service of the stack, and by other work on the machine while this ran "
            "(see loadavg_1m_before and machine_idle_cores per level)",
        },
        "setup": {
            "load_generator": loadgen.describe(CONNECTIONS),
            "seconds_per_level": seconds,
            "acks": "all (202 only after the broker acknowledged every event)",
            "broker": "Tansu 0.6 (memory storage, no retention), 6 partitions for events.v1",
            "criteria": f">= 97% of offered, no errors, p99 <= {MAX_P99_MS:g} ms",
            "trainer_triggers": args.triggers,
            "nice": {name: background_nice(name) for name in BACKGROUND},
        },
        "scenarios": results,
        "targets": {"batched_events_per_s": 10000, "single_requests_per_s": 2000, "p99_ms": 50},
        "command": "uv run python tests/bench/bench_ingest.py " + " ".join(sys.argv[1:]),
    }
    for name, res in results.items():
        print(name, json.dumps(res["max_sustainable"]), json.dumps(res["peak_achieved"]))
    benchout.write(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
