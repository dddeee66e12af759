"""Benchmark of a full trainer retrain on synthetic logs of 1M and 10M interactions.

For each size: a fresh local stack (broker, Redis, Postgres, the trainer service); a synthetic
log generated with vectorised numpy and loaded straight into Postgres; then one
``POST /v1/train``, polled until the job ends. Measured in the trainer process: wall seconds per
stage (load from Postgres, evaluate = fit every algorithm on the window minus the holdout and
score it, fit = every algorithm on the whole window, publish = write the artifacts) as the job
reports them (``metrics.timings_s``), the total from request to published, CPU seconds of the
process during the job, and its peak RSS (``VmHWM`` of ``/proc/<pid>/status``; a fresh process
per size, so the high-water mark is the training's).

The log: ``n // 25`` users with lognormal activity, ``12 * sqrt(n)`` items in 24 categories of 8
taste clusters with Zipf popularity; each event picks one of the user's two favourite
categories (or any, 15 %), half the time within the user's taste cluster; types view 55 %,
click 22 %, add_to_cart 12 %, remove_from_cart 2 %, purchase 8 %, rating 1 %; event times over
180 days. Deterministic for a seed.

How the log gets into Postgres: binary ``COPY`` straight into ``user_product_interactions``
(after ``categories``, ``products`` and ``users`` rows), each row built fixed-width in numpy;
the table's secondary indexes and foreign keys are dropped for the copy and re-created (the FKs
validated) afterwards, then ``ANALYZE``. Not through the archive (``archive.archive_events``):
that path builds a ``UserEvent`` and a Python tuple per event and de-duplicates through a
staging table, minutes for 10M rows before Postgres does any work, and it is not what this
benchmark measures (``test_bulk_load_stack.py`` covers the path of loaded events).

The trainer runs with ``STREAMREC_TRAINING__THREADS=2`` (implicit's threads = the CPU limit, as
the k8s config sets it; ``OPENBLAS_NUM_THREADS=1`` underneath); ``--threads 1,2`` runs both.

Run: ``uv run python tests/bench/bench_trainer.py`` (both sizes, about 12 minutes on 2 cores;
``--sizes 1000000`` for the small one); results in tests/bench/results/trainer.json.
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
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import benchout
import httpx
import numpy as np
import psutil
from numpy.typing import NDArray

from streamrec_dev.localstack.stack import LocalStack, StackDescription
from streamrec_shared.events import EVENT_TYPES

RESULTS = Path(__file__).parent / "results" / "trainer.json"
TARGET_TOTAL_S = {1_000_000: 30.0, 10_000_000: 240.0}  # full retrain, wall seconds
TARGET_PEAK_RSS_GB = 6.0

TYPE_SHARE = np.asarray([0.55, 0.22, 0.12, 0.02, 0.08, 0.01])
assert len(TYPE_SHARE) == len(EVENT_TYPES)
"""Share of each of ``EVENT_TYPES`` (view, click, add_to_cart, remove_from_cart, purchase,
rating)."""
N_CATEGORIES, N_CLUSTERS = 24, 8
START = 1_735_689_600.0  # 2025-01-01 UTC
DAYS = 180.0
_ADJECTIVES = ("classic", "smart", "compact", "deluxe", "eco", "vintage", "pro", "mini", "soft")
_COLOURS = ("red", "blue", "green", "black", "white", "silver", "pink", "yellow")


@dataclass(frozen=True)
class SyntheticLog:
    """users, items (n,) int32 indices; types (n,) int8 into EVENT_TYPES; values (n,) float64
    (NaN except purchase quantity and rating stars); ts (n,) float64 whole unix seconds;
    item_category (n_items,) int32, item_cluster (n_items,) int32."""

    users: NDArray[np.int32]
    items: NDArray[np.int32]
    types: NDArray[np.int8]
    values: NDArray[np.float64]
    ts: NDArray[np.float64]
    n_users: int
    n_items: int
    item_category: NDArray[np.int32]
    item_cluster: NDArray[np.int32]


def generate(n: int, seed: int = 11) -> SyntheticLog:
    """The synthetic log described in the module docstring, fully vectorised."""
    rng = np.random.default_rng(seed)
    n_users, n_items = max(50, n // 25), max(50, int(12 * n**0.5))
    item_cat = (np.arange(n_items) % N_CATEGORIES).astype(np.int32)
    item_clu = rng.integers(0, N_CLUSTERS, n_items).astype(np.int32)
    popularity = 1.0 / rng.permutation(np.arange(1, n_items + 1)) ** 0.9
    # items ordered by (category, cluster): every category and every (category, cluster)
    # segment is a contiguous range of the popularity CDF, so one searchsorted draws an item
    order = np.lexsort((item_clu, item_cat))
    cdf = np.concatenate([[0.0], np.cumsum(popularity[order])])
    segment = item_cat[order] * N_CLUSTERS + item_clu[order]
    keys = np.arange(N_CATEGORIES * N_CLUSTERS)
    seg_lo, seg_hi = np.searchsorted(segment, keys, "left"), np.searchsorted(segment, keys, "right")
    cat_lo, cat_hi = seg_lo[::N_CLUSTERS], seg_hi[N_CLUSTERS - 1 :: N_CLUSTERS]

    activity = rng.lognormal(0.0, 1.0, n_users)
    drawn = np.searchsorted(np.cumsum(activity / activity.sum()), rng.random(n))
    users = np.minimum(drawn, n_users - 1).astype(np.int32)
    fav1, fav2 = rng.integers(0, N_CATEGORIES, n_users), rng.integers(0, N_CATEGORIES, n_users)
    taste = rng.integers(0, N_CLUSTERS, n_users)
    r = rng.random(n)
    other = rng.integers(0, N_CATEGORIES, n)
    cat = np.where(r < 0.6, fav1[users], np.where(r < 0.85, fav2[users], other))
    in_cluster = rng.random(n) < 0.5
    seg = cat * N_CLUSTERS + taste[users]
    lo = np.where(in_cluster, seg_lo[seg], cat_lo[cat])
    hi = np.where(in_cluster, seg_hi[seg], cat_hi[cat])
    empty = hi <= lo
    lo, hi = np.where(empty, cat_lo[cat], lo), np.where(empty, cat_hi[cat], hi)
    u = cdf[lo] + rng.random(n) * (cdf[hi] - cdf[lo])
    pos = np.clip(np.searchsorted(cdf, u, "right") - 1, lo, hi - 1)
    items = order[pos].astype(np.int32)

    types = np.searchsorted(np.cumsum(TYPE_SHARE), rng.random(n) * TYPE_SHARE.sum())
    types = np.minimum(types, len(EVENT_TYPES) - 1).astype(np.int8)
    values = np.full(n, np.nan)
    values[types == EVENT_TYPES.index("purchase")] = 1.0
    rating = types == EVENT_TYPES.index("rating")
    values[rating] = rng.integers(1, 6, int(rating.sum()))
    span = DAYS * 86_400.0
    first = rng.uniform(0.0, span * 0.7, n_users)
    ts = np.floor(START + first[users] + rng.random(n) * (span - first[users]))
    return SyntheticLog(
        users, items, types, values, ts, n_users, n_items, item_cat, item_clu.astype(np.int32)
    )


# --- Postgres binary COPY --------------------------------------------------------------------

PG_EPOCH = 946_684_800.0  # 2000-01-01 UTC: binary timestamptz counts microseconds from it
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags 0, no header extension
COPY_TRAILER = b"\xff\xff"
COPY_COLUMNS = ["event_id", "user_id", "product_id", "event_type", "value", "ts", "received_at"]


def _digits(n: int) -> int:
    return len(str(max(n - 1, 0)))


def fixed_ids(prefix: str, numbers: NDArray[np.integer], width: int) -> NDArray[np.bytes_]:
    """b"<prefix><number zero-padded to width>" for each number: (n,) bytes, one length."""
    digits = np.empty((numbers.size, width), dtype=np.uint8)
    x = numbers.astype(np.int64)
    for k in range(width - 1, -1, -1):
        digits[:, k] = 48 + x % 10
        x //= 10
    head = np.broadcast_to(
        np.frombuffer(prefix.encode(), dtype=np.uint8), (numbers.size, len(prefix))
    )
    rows = np.ascontiguousarray(np.concatenate([head, digits], axis=1))
    return rows.view(f"S{len(prefix) + width}").ravel()


def copy_stream(log: SyntheticLog, chunk: int = 500_000) -> AsyncIterator[bytes]:
    """The log as a binary COPY stream for ``COPY_COLUMNS``. Within one event type every row has
    the same length (fixed-width ids; value NULL for all or none of the type's rows), so each
    (chunk, type) block is one numpy structured array written out as bytes."""
    n = log.users.size
    widths = (_digits(n), _digits(log.n_users), _digits(log.n_items))

    async def blocks() -> AsyncIterator[bytes]:
        yield COPY_HEADER
        for start in range(0, n, chunk):
            part = slice(start, min(start + chunk, n))
            event_ids = fixed_ids("syn", np.arange(part.start, part.stop), widths[0])
            user_ids = fixed_ids("u", log.users[part], widths[1])
            item_ids = fixed_ids("p", log.items[part], widths[2])
            micros = ((log.ts[part] - PG_EPOCH) * 1e6).astype(np.int64)
            types, values = log.types[part], log.values[part]
            for code, name in enumerate(EVENT_TYPES):
                rows = np.flatnonzero(types == code)
                if rows.size == 0:
                    continue
                with_value = not np.isnan(values[rows[0]])
                fields: list[tuple[str, Any]] = [
                    ("n", ">i2"),
                    ("l_event", ">i4"), ("event", event_ids.dtype),
                    ("l_user", ">i4"), ("user", user_ids.dtype),
                    ("l_item", ">i4"), ("item", item_ids.dtype),
                    ("l_type", ">i4"), ("type", f"S{len(name)}"),
                    ("l_value", ">i4"),
                ]  # fmt: skip
                if with_value:
                    fields.append(("value", ">f8"))
                fields += [("l_ts", ">i4"), ("ts", ">i8"), ("l_received", ">i4"), ("rec", ">i8")]
                block = np.empty(rows.size, dtype=np.dtype(fields))
                block["n"] = len(COPY_COLUMNS)
                block["l_event"], block["event"] = event_ids.dtype.itemsize, event_ids[rows]
                block["l_user"], block["user"] = user_ids.dtype.itemsize, user_ids[rows]
                block["l_item"], block["item"] = item_ids.dtype.itemsize, item_ids[rows]
                block["l_type"], block["type"] = len(name), name.encode()
                block["l_value"] = 8 if with_value else -1  # -1: NULL
                if with_value:
                    block["value"] = values[rows]
                block["l_ts"], block["ts"] = 8, micros[rows]
                block["l_received"], block["rec"] = 8, micros[rows]
                yield block.tobytes()
        yield COPY_TRAILER

    return blocks()


async def load_postgres(dsn: str, log: SyntheticLog) -> dict[str, float]:
    """categories, products, users, then the interactions (module docstring); seconds per step."""
    took: dict[str, float] = {}
    conn = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        await conn.copy_records_to_table(
            "categories",
            records=[(f"c{c:02d}", f"category {c}") for c in range(N_CATEGORIES)],
            columns=["category_id", "name"],
        )
        rng = np.random.default_rng(3)
        prices = np.round(rng.lognormal(3.0, 0.8, log.n_items), 2)
        width = _digits(log.n_items)
        products = []
        for i in range(log.n_items):
            adj = _ADJECTIVES[(i * 7 + int(log.item_cluster[i])) % len(_ADJECTIVES)]
            colour = _COLOURS[int(log.item_cluster[i]) % len(_COLOURS)]
            category = f"c{int(log.item_category[i]):02d}"
            products.append(
                (
                    f"p{i:0{width}d}",
                    f"{adj} {colour} item {i}",
                    category,
                    Decimal(str(prices[i])),
                    json.dumps({"colour": colour, "brand": f"brand{i % 40}"}),
                    f"A {adj} {colour} product of category {category}.",
                )
            )
        await conn.copy_records_to_table(
            "products",
            records=products,
            columns=["product_id", "name", "category_id", "price", "attributes", "description"],
        )
        width = _digits(log.n_users)
        await conn.copy_records_to_table(
            "users", records=[(f"u{u:0{width}d}",) for u in range(log.n_users)], columns=["user_id"]
        )
        took["dimensions_s"] = time.perf_counter() - started

        started = time.perf_counter()
        indexes = await conn.fetch(
            """SELECT indexname, indexdef FROM pg_indexes
               WHERE tablename = 'user_product_interactions' AND indexname NOT IN (
                   SELECT conname FROM pg_constraint
                   WHERE conrelid = 'user_product_interactions'::regclass)"""
        )
        foreign = await conn.fetch(
            """SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
               WHERE conrelid = 'user_product_interactions'::regclass AND contype = 'f'"""
        )
        for fk in foreign:
            await conn.execute(f'ALTER TABLE user_product_interactions DROP CONSTRAINT "{fk[0]}"')
        for index in indexes:
            await conn.execute(f'DROP INDEX "{index[0]}"')
        await conn.copy_to_table(
            "user_product_interactions",
            source=copy_stream(log),
            columns=COPY_COLUMNS,
            format="binary",
            timeout=3600,
        )
        took["copy_s"] = time.perf_counter() - started
        started = time.perf_counter()
        await conn.execute("SET maintenance_work_mem = '512MB'")
        for index in indexes:
            await conn.execute(index[1], timeout=3600)
        for fk in foreign:
            await conn.execute(
                f'ALTER TABLE user_product_interactions ADD CONSTRAINT "{fk[0]}" {fk[1]}',
                timeout=3600,
            )
        await conn.execute("ANALYZE", timeout=3600)
        took["indexes_s"] = time.perf_counter() - started
        count = await conn.fetchval("SELECT count(*) FROM user_product_interactions")
        assert count == log.users.size, (count, log.users.size)
    finally:
        await conn.close()
    return {k: round(v, 2) for k, v in took.items()}


# --- measuring the trainer -------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM of a process in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def _tree_size(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


async def train(desc: StackDescription, pid: int) -> dict[str, Any]:
    """One ``POST /v1/train``; wall time to the final status, CPU seconds and peak RSS."""
    proc = psutil.Process(pid)
    headers = {"X-API-Key": desc.api_keys["admin"]}
    base = desc.urls["trainer"]
    rss_before = proc_status(pid)
    cpu_before = proc.cpu_times()
    samples: list[tuple[float, int]] = []
    async with httpx.AsyncClient(timeout=30.0, headers=headers) as http:
        started = time.perf_counter()
        response = await http.post(base + "/v1/train", json={})
        response.raise_for_status()
        job_id = response.json()["job_id"]
        while True:
            await asyncio.sleep(0.25)
            samples.append((time.perf_counter() - started, proc_status(pid)["VmRSS"]))
            job = (await http.get(f"{base}/v1/train/{job_id}")).json()
            if job["status"] not in ("queued", "running"):
                break
        total = time.perf_counter() - started
        models = (await http.get(base + "/v1/models")).json()
    cpu_after = proc.cpu_times()
    rss_after = proc_status(pid)
    cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    metrics = job.get("metrics") or {}
    timings = metrics.get("timings_s") or {}
    version: dict[str, Any] = next(
        (m for m in models["models"] if m["version"] == job["model_version"]), {}
    )
    artifact_bytes = None
    if version.get("artifact_uri", "").startswith("file://"):
        root = Path(version["artifact_uri"].removeprefix("file://"))
        artifact_bytes = await asyncio.to_thread(_tree_size, root)
    step = max(1, len(samples) // 60)
    return {
        "status": job["status"],
        "error": job.get("error"),
        "model_version": job["model_version"],
        "wall_s": {
            **{k: round(v, 2) for k, v in (timings.get("wall") or {}).items()},
            "total": round(total, 2),
        },
        "cpu_s": {
            **{k: round(v, 2) for k, v in (timings.get("cpu") or {}).items()},
            "total": round(cpu, 2),
        },
        "peak_rss_bytes": rss_after["VmHWM"],
        "rss_before_bytes": rss_before["VmRSS"],
        "rss_samples": [(round(t, 1), r) for t, r in samples[::step]],
        "holdout": metrics.get("holdout"),
        "ndcg@20": {
            name: round(values["ndcg@20"], 4)
            for name, values in (metrics.get("algorithms") or {}).items()
        },
        "n_interactions": version.get("n_interactions"),
        "artifact_bytes": artifact_bytes,
    }


def bench_size(
    n: int, seed: int, state_dir: Path, threads: list[int], repeat: int
) -> list[dict[str, Any]]:
    """Generate and load one log, then ``repeat`` retrains per thread setting, each in a fresh
    trainer process (its VmHWM is that training's peak)."""
    started = time.perf_counter()
    log = generate(n, seed)
    generate_s = time.perf_counter() - started
    shape = {"interactions": n, "users": log.n_users, "items": log.n_items}
    print(f"[{n:,}] generated {log.n_users:,} users x {log.n_items:,} items "
          f"in {generate_s:.1f}s", flush=True)  # fmt: skip
    stack = LocalStack(state_dir)
    desc = stack.start(services=())
    runs = []
    try:
        loaded = asyncio.run(load_postgres(desc.postgres_dsn, log))
        del log
        print(f"[{n:,}] loaded into Postgres: {loaded}", flush=True)
        for k in [k for k in threads for _ in range(repeat)]:
            stack.start_service("trainer", extra_env={"STREAMREC_TRAINING__THREADS": str(k)})
            stack.wait_ready("trainer", timeout=120)
            load_avg = os.getloadavg()
            result = asyncio.run(train(desc, stack.proc("trainer").pid))
            stack.stop_process("trainer")
            runs.append(
                {
                    **shape,
                    "threads": k,
                    "generate_s": round(generate_s, 2),
                    "postgres_load_s": loaded,
                    **result,
                    "load_average_before": [round(x, 2) for x in load_avg],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()],
                }
            )
            w = result["wall_s"]
            print(
                f"[{n:,} threads={k}] {result['status']} in {w['total']:.1f}s (target "
                f"{TARGET_TOTAL_S.get(n, '-')} s) load {w.get('load')}s evaluate "
                f"{w.get('evaluate')}s fit {w.get('fit')}s publish {w.get('publish')}s; trainer "
                f"CPU {result['cpu_s']}; peak RSS {result['peak_rss_bytes'] / 2**30:.2f}"
                f" GB; ndcg@20 {result['ndcg@20']}",
                flush=True,
            )
    finally:
        stack.stop()
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="comma list of log sizes")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--threads",
        default="2",
        help="comma list of STREAMREC_TRAINING__THREADS settings to run (default 2: the CPU "
        "limit, as deploy/k8s/base/trainer/configmap.yaml sets it)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="retrains per size and thread setting"
    )
    parser.add_argument("--no-write", action="store_true", help="do not write results JSON")
    parser.add_argument("--state-dir", help="keep the stacks' state and logs here")
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    runs = []
    threads = [int(k) for k in args.threads.split(",")]
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
            state = Path(args.state_dir) / str(n) if args.state_dir else Path(tmp)
            runs += bench_size(n, args.seed, state, threads, args.repeat)
    summary = summarise(runs)
    out = {
        "benchmark": "trainer",
        "command": "uv run python tests/bench/bench_trainer.py " + " ".join(sys.argv[1:]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_bytes": psutil.virtual_memory().total,
            "python": platform.python_version(),
            "note": "2 cores shared with other engineers' runs at the same time: wall times "
            "vary with their load (load_average_*); cpu_s does much less",
        },
        "targets": {
            "total_s": {str(k): v for k, v in TARGET_TOTAL_S.items()},
            "peak_rss_gb": TARGET_PEAK_RSS_GB,
        },
        "postgres_load_path": "binary COPY into user_product_interactions (module docstring)",
        "summary": summary,
        "runs": runs,
    }
    if not args.no_write:
        benchout.write(RESULTS, out)
    for row in summary:
        target = TARGET_TOTAL_S.get(row["interactions"])
        ok_time = target is None or row["best_total_s"] <= target
        ok_rss = row["max_peak_rss_gb"] <= TARGET_PEAK_RSS_GB
        print(
            f"{row['interactions']:>10,} threads={row['threads']} ({row['runs']} run(s)): total "
            f"best {row['best_total_s']:.1f}s median {row['median_total_s']:.1f}s "
            f"[{'ok' if ok_time else 'MISSED'} <= {target or '-'} s], CPU median "
            f"{row['median_cpu_s']:.1f}s; peak RSS {row['max_peak_rss_gb']:.2f} GB "
            f"[{'ok' if ok_rss else 'MISSED'} <= {TARGET_PEAK_RSS_GB} GB]"
        )


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (size, threads): best and median total wall, median CPU, highest peak RSS."""
    out = []
    for key in dict.fromkeys((r["interactions"], r["threads"]) for r in runs):
        group = [r for r in runs if (r["interactions"], r["threads"]) == key]
        totals = [r["wall_s"]["total"] for r in group]
        out.append(
            {
                "interactions": key[0],
                "threads": key[1],
                "runs": len(group),
                "statuses": sorted({r["status"] for r in group}),
                "best_total_s": min(totals),
                "median_total_s": round(float(np.median(totals)), 2),
                "median_cpu_s": round(float(np.median([r["cpu_s"]["total"] for r in group])), 2),
                "max_peak_rss_gb": round(max(r["peak_rss_bytes"] for r in group) / 2**30, 3),
            }
        )
    return out


if __name__ == "__main__":
    main()
