"""Session benchmark: the click a shopper just made, replayed through the API, next-item metrics.

A fresh local stack; a ``session,item,timestamp`` click log (optionally a ``user`` column) split by
time: the last calendar day (UTC) is the test day, the ``--train-days`` before it the training days
(the last day with at least ``--min-test-sessions`` sessions of two clicks or more, so that a short
last day does not make the test). The training clicks go through ingest as ``click`` events (user:
the log's user, else the session), the trainer trains once (``POST /v1/train``) and the recommender
serves that version. Then every test session (``--max-sessions`` of them, seeded) is replayed as an
anonymous shopper (user id ``anon-<session>``, unknown to the model): each click is POSTed and,
right after the 202 and with no wait, the top 20 asked

- ``auto``: as a shop page asks;
- ``auto+context``: the same with ``context=<the clicked product>`` (a product page);
- ``sknn``, ``itemknn``: the algorithms asked explicitly, for comparison.

The next click of the session must be in the answer: HR@20 and MRR@20 over every click that has
a next one. Offline on the same split, same sessions, same cases, in the same run
(``streamrec_trainer.sessions``): ``popularity``, ``session_itemknn``, ``last_itemknn`` and
``sknn``, each given the whole session prefix. Clicks on products the training days do not
have are dropped from the test sessions first (no model trained before them can rank them),
for the live replay as well.

Logs: ``--source online-retail`` (default; ``../shared/data/online-retail``: one invoice's lines
in file order are a session, the customer its user), ``--source synthetic``
(``streamrec_dev.synthetic.session_log``) or ``--log FILE`` (CSV with a header naming
``session``, ``item``, ``timestamp`` (unix seconds or ISO-8601) and optionally ``user``).

Run: ``uv run python tests/bench/bench_sessions.py`` (both built-in logs; ``--sources``) ->
tests/bench/results/sessions.json. Target: asked at once after the 202, ``auto``'s HR@20 and
MRR@20 >= the best offline baseline's of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gzip
import io
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import benchout
import httpx
import numpy as np
from numpy.typing import NDArray

from streamrec_dev import synthetic
from streamrec_dev.localstack.stack import LocalStack, StackDescription
from streamrec_shared.profile import segment_for
from streamrec_trainer import sessions

RESULTS = Path(__file__).parent / "results" / "sessions.json"
ONLINE_RETAIL = (
    Path(__file__).parents[3] / "shared" / "data" / "online-retail" / "online_retail.csv.gz"
)
K = 20
TRAIN_TIMEOUT_S = 3 * 3600.0  # a training job on the whole data set; the benchmark waits it out
MODES = ("auto", "auto+context", "sknn", "itemknn")
BASELINES = ("popularity", "session_itemknn", "last_itemknn")


@dataclass(frozen=True)
class ClickLog:
    """(n,) columns: session, user (the session when the log has none), item ids; ts unix s."""

    session: NDArray[np.str_]
    user: NDArray[np.str_]
    item: NDArray[np.str_]
    ts: NDArray[np.float64]
    name: str


def _open(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _ts(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        moment = datetime.fromisoformat(value.strip())
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def read_csv(path: Path) -> ClickLog:
    """Any ``session,item,timestamp[,user]`` CSV (header required)."""
    rows: dict[str, list[Any]] = {"session": [], "user": [], "item": [], "ts": []}
    with _open(path) as fh:
        for row in csv.DictReader(fh):
            rows["session"].append(row["session"])
            rows["user"].append(row.get("user") or row["session"])
            rows["item"].append(row["item"].strip().replace(" ", "_"))
            rows["ts"].append(_ts(row["timestamp"]))
    return _log(rows, path.name)


def read_online_retail(path: Path) -> ClickLog:
    """Invoices as sessions (lines in file order; cancellations left out), customers as users
    (the invoice when the line has none)."""
    rows: dict[str, list[Any]] = {"session": [], "user": [], "item": [], "ts": []}
    with _open(path) as fh:
        for row in csv.DictReader(fh):
            invoice = row["InvoiceNo"]
            if invoice.startswith("C") or float(row["Quantity"]) <= 0:
                continue
            customer = row["CustomerID"].split(".")[0].strip()
            rows["session"].append(invoice)
            rows["user"].append(f"c{customer}" if customer else f"i{invoice}")
            rows["item"].append(row["StockCode"].strip().replace(" ", "_"))
            rows["ts"].append(_ts(row["InvoiceDate"]))
    return _log(rows, "online-retail")


def synthetic_log(seed: int) -> ClickLog:
    clicks = synthetic.session_log(n_users=2000, n_products=2000, n_sessions=12_000, seed=seed)
    rows: dict[str, list[Any]] = {
        "session": [c.session_id for c in clicks],
        "user": [c.user_id for c in clicks],
        "item": [c.product_id for c in clicks],
        "ts": [c.ts for c in clicks],
    }
    return _log(rows, "synthetic")


def _log(rows: dict[str, list[Any]], name: str) -> ClickLog:
    return ClickLog(
        session=np.asarray(rows["session"], dtype=np.str_),
        user=np.asarray(rows["user"], dtype=np.str_),
        item=np.asarray(rows["item"], dtype=np.str_),
        ts=np.asarray(rows["ts"], dtype=np.float64),
        name=name,
    )


@dataclass(frozen=True)
class Split:
    """The training clicks (rows of the log), the test sessions (item ids in click order,
    products unknown in training dropped, at least two clicks), the training item vocabulary
    and the offline Sessions of both (items as vocabulary codes)."""

    train_rows: NDArray[np.int64]
    test_ids: list[str]
    test_items: list[list[str]]
    vocab: NDArray[np.str_]
    train: sessions.Sessions
    test: sessions.Sessions
    test_day: str
    train_days: float


def split(
    log: ClickLog, train_days: float, max_sessions: int, seed: int, min_sessions: int = 50
) -> Split:
    sess_codes_all = np.unique(log.session, return_inverse=True)[1].astype(np.int64)
    first = np.full(int(sess_codes_all.max()) + 1, np.inf)
    np.minimum.at(first, sess_codes_all, log.ts)
    start_of = first[sess_codes_all]
    day = np.floor(start_of / 86400.0)
    counts = np.bincount(sess_codes_all)
    session_day = np.floor(first / 86400.0)
    days, per_day = np.unique(session_day[counts >= 2], return_counts=True)
    busy = days[per_day >= min_sessions]
    test_day = float(busy.max() if busy.size else days.max())
    in_test = day == test_day
    in_train = (start_of < test_day * 86400.0) & (
        start_of >= test_day * 86400.0 - train_days * 86400.0
    )
    train_rows = np.flatnonzero(in_train)
    vocab = np.unique(log.item[train_rows])
    codes = np.searchsorted(vocab, log.item)
    codes = np.where(
        (codes < vocab.size) & (vocab[np.minimum(codes, vocab.size - 1)] == log.item), codes, -1
    )
    train = sessions.from_rows(
        sess_codes_all[train_rows].astype(np.int64),
        codes[train_rows].astype(np.int64),
        log.ts[train_rows],
    )
    test_rows = np.flatnonzero(in_test & (codes >= 0))
    full = sessions.from_rows(
        sess_codes_all[test_rows].astype(np.int64),
        codes[test_rows].astype(np.int64),
        log.ts[test_rows],
    )
    keep = np.diff(full.indptr) >= 2
    full = full.select(keep)
    if len(full) > max_sessions:
        pick = np.zeros(len(full), dtype=bool)
        pick[np.random.default_rng(seed).choice(len(full), max_sessions, replace=False)] = True
        full = full.select(pick)
    test_items = [[str(vocab[i]) for i in full.session(s).tolist()] for s in range(len(full))]
    test_ids = [f"anon-{log.name}-{s}" for s in range(len(full))]
    return Split(
        train_rows=train_rows, test_ids=test_ids, test_items=test_items, vocab=vocab,
        train=train, test=full,
        test_day=datetime.fromtimestamp(test_day * 86400.0, UTC).date().isoformat(),
        train_days=train_days,
    )  # fmt: skip


def offline(sp: Split) -> dict[str, Any]:
    """The protocol's predictors on the split: every test session, every next click."""
    return sessions.next_item_report(sp.train, sp.test, int(sp.vocab.size), max_sessions=None)


def _batches(items: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


async def load(desc: StackDescription, log: ClickLog, sp: Split) -> dict[str, Any]:
    """Catalog and training clicks through ingest; waits until the archive holds them."""
    headers = {"X-API-Key": desc.api_keys["admin"]}
    ingest = desc.urls["ingest"]
    products = [
        {"product_id": str(p), "name": f"item {p}", "category": "shop", "price": 1.0}
        for p in np.unique(log.item).tolist()
    ]
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=60.0, headers=headers) as http:
        for chunk in _batches(products, 1000):
            r = await http.post(f"{ingest}/v1/products", json={"products": chunk})
            r.raise_for_status()
        rows = sp.train_rows
        events = [
            {
                "event_id": f"tr-{log.name}-{i}",
                "user_id": str(log.user[i]),
                "event_type": "click",
                "product_id": str(log.item[i]),
                "timestamp": float(log.ts[i]),
                "session_id": str(log.session[i])[:128],
            }
            for i in rows.tolist()
        ]
        sem = asyncio.Semaphore(4)

        async def post(chunk: list[dict[str, Any]]) -> None:
            async with sem:
                r = await http.post(f"{ingest}/v1/events", json={"events": chunk})
                r.raise_for_status()

        await asyncio.gather(*(post(c) for c in _batches(events, 1000)))
    conn = await asyncpg.connect(desc.postgres_dsn)
    try:
        while True:
            n = await conn.fetchval("SELECT count(*) FROM user_product_interactions")
            if n >= len(events):
                break
            await asyncio.sleep(0.5)
    finally:
        await conn.close()
    return {
        "products": len(products),
        "events": len(events),
        "load_s": round(time.perf_counter() - started, 1),
    }


async def train(desc: StackDescription) -> dict[str, Any]:
    async with desc.client(timeout=60.0) as client:
        started = time.perf_counter()
        job = await client.wait_for_job(await client.train(), timeout=TRAIN_TIMEOUT_S)
        if job.status != "published":
            raise RuntimeError(f"training did not publish: {job}")
        version = job.model_version
        while True:  # the recommender follows models.v1
            if (await client.recommendations("nobody", k=1)).model_version == version:
                break
            await asyncio.sleep(0.5)
    metrics = job.metrics or {}
    return {
        "version": version,
        "train_s": round(time.perf_counter() - started, 1),
        "holdout": metrics.get("holdout"),
        "holdout_hr@20": {
            n: round(m.get("hr@20", 0.0), 4) for n, m in (metrics.get("algorithms") or {}).items()
        },
    }


async def replay(desc: StackDescription, sp: Split, concurrency: int) -> dict[str, Any]:
    """Every test session as an anonymous shopper; per click: POST, then the four GETs."""
    headers = {"X-API-Key": desc.api_keys["admin"]}
    ingest, rec = desc.urls["ingest"], desc.urls["recommender"]
    hits: dict[str, dict[str, list[float]]] = {m: {} for m in MODES}
    rr: dict[str, dict[str, list[float]]] = {m: {} for m in MODES}
    strategies: dict[str, dict[str, int]] = {m: {} for m in MODES}
    latency: list[float] = []
    sem = asyncio.Semaphore(concurrency)

    async def one(http: httpx.AsyncClient, user: str, items: list[str]) -> None:
        async with sem:
            for t, item in enumerate(items[:-1]):
                # the click's own time (a session's clicks are sequential, so in order): ingest
                # refuses event times more than max_future_skew_s ahead of its clock
                event = {"user_id": user, "event_type": "click", "product_id": item,
                         "timestamp": time.time()}  # fmt: skip
                started = time.perf_counter()
                r = await http.post(f"{ingest}/v1/events", json=event)
                r.raise_for_status()
                latency.append(time.perf_counter() - started)
                if len(latency) % 1000 == 0:
                    print(f"  {len(latency)} clicks replayed", flush=True)
                target = items[t + 1]
                for mode in MODES:
                    params: dict[str, Any] = {"k": K, "algorithm": mode.split("+")[0]}
                    if mode == "auto+context":
                        params["context"] = item
                    got = (await http.get(f"{rec}/v1/recommendations/{user}", params=params)).json()
                    ranked = [x["product_id"] for x in got["items"]]
                    rank = ranked.index(target) + 1 if target in ranked else 0
                    for key in ("all", segment_for(t + 1)):
                        hits[mode].setdefault(key, []).append(1.0 if rank else 0.0)
                        rr[mode].setdefault(key, []).append(1.0 / rank if rank else 0.0)
                    how = f"{got['algorithm']}:{got['strategy']}"
                    strategies[mode][how] = strategies[mode].get(how, 0) + 1

    started = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(timeout=30.0, headers=headers, limits=limits) as http:
        await asyncio.gather(
            *(one(http, u, s) for u, s in zip(sp.test_ids, sp.test_items, strict=True))
        )
    lat = np.asarray(latency) * 1000.0
    return {
        "modes": {m: sessions.metrics_of(hits[m], rr[m], K) for m in MODES},
        "answered_by": strategies,
        "replay_s": round(time.perf_counter() - started, 1),
        "ingest_single_ms": {
            "p50": round(float(np.percentile(lat, 50)), 2),
            "p99": round(float(np.percentile(lat, 99)), 2),
        },
    }


def run_source(log: ClickLog, args: argparse.Namespace, state_dir: Path) -> dict[str, Any]:
    sp = split(log, args.train_days, args.max_sessions, args.seed, args.min_test_sessions)
    print(f"[{log.name}] test day {sp.test_day}: {len(sp.test)} sessions; training "
          f"{sp.train_rows.size:,} clicks in {len(sp.train):,} sessions, {sp.vocab.size:,} items",
          flush=True)  # fmt: skip
    started = time.perf_counter()
    base = offline(sp)
    print(f"[{log.name}] offline in {time.perf_counter() - started:.1f}s: "
          + ", ".join(f"{n} {m['hr@20']:.3f}/{m['mrr@20']:.3f}"
                      for n, m in base.items() if n != "protocol"),
          flush=True)  # fmt: skip
    if args.offline_only:
        return {"source": log.name, "test_day": sp.test_day, "offline": base}
    stack = LocalStack(state_dir, triggers=False)  # one retrain, served to everyone at once
    desc = stack.start()
    try:
        loaded = asyncio.run(load(desc, log, sp))
        print(f"[{log.name}] loaded {loaded}", flush=True)
        trained = asyncio.run(train(desc))
        print(f"[{log.name}] trained {trained}", flush=True)
        load_before = os.getloadavg()
        live = asyncio.run(replay(desc, sp, args.concurrency))
    finally:
        stack.stop()
    best = {metric: max(base[n][metric] for n in BASELINES) for metric in (f"hr@{K}", f"mrr@{K}")}
    auto = live["modes"]["auto"]
    met = all(auto[m] >= best[m] for m in best)
    for mode, m in live["modes"].items():
        print(
            f"[{log.name}] live {mode}: HR@20 {m['hr@20']:.3f} MRR@20 {m['mrr@20']:.3f} "
            f"(n={m['n']:.0f})"
        )
    print(f"[{log.name}] best offline baseline HR@20 {best['hr@20']:.3f} MRR@20 "
          f"{best['mrr@20']:.3f}: target {'met' if met else 'MISSED'}", flush=True)  # fmt: skip
    return {
        "source": log.name,
        "test_day": sp.test_day,
        "train_days": sp.train_days,
        "n_test_sessions": len(sp.test),
        "n_train_sessions": len(sp.train),
        "n_items": int(sp.vocab.size),
        "offline": base,
        "loaded": loaded,
        "trained": trained,
        "live": live,
        "best_offline_baseline": best,
        "target_met": met,
        "load_average_before_replay": [round(x, 2) for x in load_before],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", default="online-retail,synthetic",
                        help="built-in logs to run: online-retail, synthetic")  # fmt: skip
    parser.add_argument("--log", help="a session,item,timestamp[,user] CSV instead")
    parser.add_argument("--online-retail", default=str(ONLINE_RETAIL))
    parser.add_argument("--train-days", type=float, default=30.0)
    parser.add_argument("--max-sessions", type=int, default=300, help="test sessions replayed")
    parser.add_argument("--min-test-sessions", type=int, default=50,
                        help="test day: the last day with at least this many sessions")  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=8, help="sessions replayed at once")
    parser.add_argument("--seed", type=int, default=7)
    benchout.add_args(parser, RESULTS)
    parser.add_argument("--offline-only", action="store_true", help="no stack: baselines only")
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    logs: list[ClickLog] = []
    if args.log:
        logs.append(read_csv(Path(args.log)))
    else:
        for source in args.sources.split(","):
            if source == "online-retail":
                logs.append(read_online_retail(Path(args.online_retail)))
            elif source == "synthetic":
                logs.append(synthetic_log(args.seed))
            else:
                raise SystemExit(f"unknown source {source!r}")
    runs = []
    for log in logs:
        with tempfile.TemporaryDirectory(prefix="bench-sessions-") as tmp:
            runs.append(run_source(log, args, Path(tmp)))
    out = {
        "benchmark": "sessions",
        "command": "uv run python tests/bench/bench_sessions.py " + " ".join(sys.argv[1:]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "target": "asked at once after the 202, auto's HR@20 and MRR@20 >= the best offline "
        "baseline's (popularity, session_itemknn, last_itemknn) of the same run",
        "runs": runs,
    }
    if not args.no_write:
        benchout.write(args.out, out)


if __name__ == "__main__":
    main()
