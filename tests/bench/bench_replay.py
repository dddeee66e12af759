"""Replay benchmark: the Online Retail log through the HTTP API, scored as the offline protocol.

What a new user of the system would do with a public log, end to end:

1. a fresh local stack without demo data (``streamrec_dev.localstack``: broker, Redis,
   Postgres, the four services);
2. the UCI Online Retail log of ``../shared/data/online-retail/`` split by the protocol of its
   README (global temporal split, the last 20% of the time span is the test period);
3. the training period replayed through ingest: every product first (``POST /v1/products``, the
   most frequent description as name, one category ``retail``: the file has none), then every
   purchase in time order with its own timestamp and quantity (``EVENTS_PATH``, batches of
   ``BATCH``, a few batches in flight, so events of one instant may interleave);
4. one retrain through the trainer (``POST /v1/train``, polled to its end), and the recommender
   serving the published version;
5. top-20 from ``GET /v1/recommendations/{user}`` for every test user of the protocol (users
   with training history and at least one novel target), for ``auto`` and every served
   algorithm (``REGISTRY.served``), with the user's training items in ``exclude=`` (the
   protocol's novel items; capped at the parameter's 8 KiB) and, as a second pass
   (``--no-exclude-pass`` skips it), without it: what a client gets by default;
6. the lists scored with the protocol (``streamrec_trainer.evaluate.rank_metrics``: HR@20,
   NDCG@20 over novel targets; items unknown to the training catalogue count as misses), next to
   the offline references computed in the same run by the trainer's offline code
   (``streamrec_trainer.offline.run_eval`` on the same file: tuned on validation, refit, test).

``auto_breakdown`` in the results says where ``auto`` gains or loses: its users grouped by the
algorithm|strategy that answered them and by segment, with every served algorithm's NDCG@20 on
the same users.

Writes ``tests/bench/results/replay.json`` and prints the table. Run:
``uv run python tests/bench/bench_replay.py`` (about 6 minutes on 2 cores);
``--max-test-users 300`` for a quick look; ``--skip-offline`` to leave out the references.
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
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import benchout
import httpx
import numpy as np
import psutil

from streamrec_dev.localstack.stack import LocalStack, StackDescription
from streamrec_shared.algorithms import AUTO, REGISTRY
from streamrec_shared.profile import segment_for
from streamrec_trainer.dataset import Catalog, Interactions, load_online_retail, temporal_split
from streamrec_trainer.evaluate import (
    Holdout,
    make_holdout,
    ndcg_per_user,
    rank_metrics,
    user_event_counts,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "online-retail"
CSV = DATA / "online_retail.csv.gz"
RESULTS = Path(__file__).parent / "results" / "replay.json"
EVENTS_PATH = "/v1/events"
"""Where past events go. Ingest takes past timestamps on ``POST /v1/events`` today; a history
endpoint (``/v1/events/history`` with an ``import`` key) may replace it: switch here."""
BATCH = 1000
IN_FLIGHT = 4
K = 20
TRAIN_TIMEOUT_S = 6 * 3600.0  # a training job on the whole data set; the benchmark waits it out
TEST_FRACTION = 0.2
CATEGORY = "retail"
EXCLUDE_MAX_CHARS = 8192
REFERENCE_EASE_NDCG = 0.113
TARGET_AUTO_VS_EASE = 1.05
TARGET_AUTO_VS_BEST = 0.98


# --- data ------------------------------------------------------------------------------------


def wire(product_id: str) -> str:
    """A StockCode as an API id: ids may not hold whitespace ("BANK CHARGES" -> "BANK_CHARGES")."""
    return "_".join(product_id.split())


def products(catalog: Catalog) -> list[dict[str, Any]]:
    out = []
    for pid, text, price in zip(
        catalog.product_ids.tolist(), catalog.texts.tolist(), catalog.prices.tolist(), strict=True
    ):
        out.append(
            {
                "product_id": wire(pid),
                "name": (text or pid)[:512],
                "category": CATEGORY,
                "price": float(price) if np.isfinite(price) and price >= 0 else 0.0,
            }
        )
    return out


def events(train: Interactions) -> list[dict[str, Any]]:
    """The training period's purchases in time order (stable: file order within a second)."""
    order = np.argsort(train.timestamps, kind="stable")
    users, items = train.user_ids[order].tolist(), train.item_ids[order].tolist()
    ts, values = train.timestamps[order].tolist(), train.values[order].tolist()
    return [
        {
            "event_id": f"or-{i}",
            "user_id": u,
            "event_type": "purchase",
            "product_id": wire(p),
            "timestamp": float(t),
            **({"value": float(v)} if np.isfinite(v) else {}),
        }
        for i, (u, p, t, v) in enumerate(zip(users, items, ts, values, strict=True))
    ]


def seen_items(holdout: Holdout) -> dict[str, list[str]]:
    """Training items of each evaluated user (the protocol's exclusions), by user id."""
    x = holdout.matrix().matrix
    out: dict[str, list[str]] = {}
    for row in holdout.users.tolist():
        cols = x.indices[x.indptr[row] : x.indptr[row + 1]]
        out[str(holdout.user_ids[row])] = [wire(p) for p in holdout.item_ids[cols].tolist()]
    return out


def exclude_param(items: Sequence[str]) -> str:
    """Comma-joined ids, cut to the parameter's limit (the rest are not excluded)."""
    out: list[str] = []
    size = 0
    for p in items:
        if size + len(p) + 1 > EXCLUDE_MAX_CHARS:
            break
        out.append(p)
        size += len(p) + 1
    return ",".join(out)


# --- the stack -------------------------------------------------------------------------------


async def post_all(
    http: httpx.AsyncClient, url: str, key: str, rows: list[dict[str, Any]]
) -> float:
    """POST ``rows`` in batches of BATCH, IN_FLIGHT at a time; returns the seconds taken."""
    started = time.perf_counter()
    sem = asyncio.Semaphore(IN_FLIGHT)

    async def one(chunk: list[dict[str, Any]]) -> None:
        async with sem:
            for attempt in range(10):
                r = await http.post(url, json={key: chunk})
                if r.status_code in (200, 201, 202):
                    return
                if r.status_code in (429, 502, 503, 504):
                    await asyncio.sleep(0.5 * (attempt + 1))
                    continue
                raise RuntimeError(f"{url}: {r.status_code} {r.text[:300]}")
            raise RuntimeError(f"{url}: gave up after retries")

    await asyncio.gather(*(one(rows[i : i + BATCH]) for i in range(0, len(rows), BATCH)))
    return time.perf_counter() - started


async def wait_archived(dsn: str, n: int, timeout: float = 600.0) -> float:
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        while True:
            count = await conn.fetchval("SELECT count(*) FROM user_product_interactions")
            if count >= n:
                return time.perf_counter() - started
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"archive holds {count} of {n} events after {timeout}s")
            await asyncio.sleep(1.0)
    finally:
        await conn.close()


async def wait_profiles(
    http: httpx.AsyncClient, base: str, expected: dict[str, int], timeout: float = 600.0
) -> float:
    """Until the live profiles of ``expected`` users count their events (the processor caught
    up with the replay)."""
    started = time.perf_counter()
    pending = dict(expected)
    while pending:
        for user, n in list(pending.items()):
            r = await http.get(f"{base}/v1/users/{user}/profile")
            if r.status_code == 200 and r.json()["event_count"] >= n:
                del pending[user]
        if pending:
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"profiles behind after {timeout}s: {pending}")
            await asyncio.sleep(1.0)
    return time.perf_counter() - started


async def train(desc: StackDescription) -> dict[str, Any]:
    started = time.perf_counter()
    async with desc.client(timeout=60.0) as client:
        done = await client.wait_for_job(await client.train(), timeout=TRAIN_TIMEOUT_S)
    job = done.model_dump(exclude_none=True)
    job["wall_s"] = round(time.perf_counter() - started, 1)
    if job["status"] not in ("published", "succeeded", "done"):
        raise RuntimeError(f"training ended {job['status']}: {json.dumps(job)[:1000]}")
    return dict(job)


async def wait_served(http: httpx.AsyncClient, base: str, user: str, version: int) -> None:
    for _ in range(300):
        r = await http.get(f"{base}/v1/recommendations/{user}", params={"k": 1})
        if r.status_code == 200 and r.json().get("model_version") == version:
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"the recommender does not serve model {version}")


async def new_product_latency(
    http: httpx.AsyncClient, ingest: str, reco: str, related: list[dict[str, Any]]
) -> dict[str, Any]:
    """Seconds from a product PUT's 2xx (a variant of an existing product) to the product in
    ``/similar`` of the one it was made from, per product; polled every 10 ms."""
    seconds: list[float] = []
    strategies: list[str] = []
    for n, p in enumerate(related):
        new_id = f"NEW-{n}-{p['product_id']}"
        body = {k: p[k] for k in ("name", "category", "price")}
        body["name"] = f"{p['name']} (new edition)"[:512]
        r = await http.put(f"{ingest}/v1/products/{new_id}", json=body)
        r.raise_for_status()
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 30:
            s = await http.get(f"{reco}/v1/products/{p['product_id']}/similar", params={"k": 10})
            if s.status_code == 200 and new_id in [i["product_id"] for i in s.json()["items"]]:
                seconds.append(time.perf_counter() - t0)
                strategies.append(s.json()["strategy"])
                break
            await asyncio.sleep(0.01)
        else:
            seconds.append(float("inf"))
    ok = sorted(x for x in seconds if np.isfinite(x))
    return {
        "n": len(related),
        "found": len(ok),
        "seconds": [round(x, 3) for x in seconds],
        "median_s": round(ok[len(ok) // 2], 3) if ok else None,
        "max_s": round(max(seconds), 3) if seconds else None,
        "strategies": sorted(set(strategies)),
        "target_s": 1.0,
    }


async def read_lists(
    http: httpx.AsyncClient,
    base: str,
    users: list[str],
    algorithm: str,
    seen: dict[str, list[str]] | None,
    concurrency: int = 8,
) -> tuple[dict[str, list[str]], dict[str, str], float]:
    """Top-K per user; also the algorithm|strategy that answered each user, and seconds
    taken."""
    sem = asyncio.Semaphore(concurrency)
    lists: dict[str, list[str]] = {}
    strategies: dict[str, str] = {}
    started = time.perf_counter()

    async def one(user: str) -> None:
        params = {"k": str(K), "algorithm": algorithm}
        if seen is not None:
            params["exclude"] = exclude_param(seen.get(user, ()))
        async with sem:
            for _ in range(5):
                r = await http.get(f"{base}/v1/recommendations/{user}", params=params)
                if r.status_code == 200:
                    break
                await asyncio.sleep(0.5)
            r.raise_for_status()
        body = r.json()
        lists[user] = [it["product_id"] for it in body["items"]]
        strategies[user] = f"{body['algorithm']}|{body['strategy']}"

    await asyncio.gather(*(one(u) for u in users))
    return lists, strategies, time.perf_counter() - started


def tally(strategies: dict[str, str]) -> dict[str, int]:
    """How many users each algorithm|strategy answered, most first."""
    found: dict[str, int] = defaultdict(int)
    for label in strategies.values():
        found[label] += 1
    return dict(sorted(found.items(), key=lambda kv: -kv[1]))


def ranked_lists(
    holdout: Holdout, users: list[str], lists: dict[str, list[str]]
) -> tuple[np.ndarray, Any]:
    """(ranked (m, K) int32 holdout columns, -1 = unknown or empty; targets (m, n_items))."""
    col = {wire(p): i for i, p in enumerate(holdout.item_ids.tolist())}
    ranked = np.full((len(users), K), -1, dtype=np.int32)
    for r, user in enumerate(users):
        idx = [col.get(p, -1) for p in lists.get(user, [])[:K]]
        ranked[r, : len(idx)] = idx
    rows = {str(holdout.user_ids[row]): n for n, row in enumerate(holdout.users.tolist())}
    return ranked, holdout.targets[[rows[u] for u in users]]


def breakdown(
    holdout: Holdout,
    users: list[str],
    lists: dict[str, dict[str, list[str]]],
    strategies: dict[str, str],
) -> dict[str, Any]:
    """Where ``auto`` gains or loses: its users grouped by the algorithm|strategy that answered
    them and by segment (``profile.segment_for`` of their training events), with the NDCG@K
    every served algorithm reached on the same users."""
    per_user = {}
    for name, got in lists.items():
        ranked, targets = ranked_lists(holdout, users, got)
        per_user[name] = ndcg_per_user(ranked, targets, K)
    events = dict(zip(
        (str(holdout.user_ids[r]) for r in holdout.users.tolist()),
        user_event_counts(holdout).tolist(), strict=True,
    ))  # fmt: skip
    groups: dict[str, dict[str, list[int]]] = {"answered_by": defaultdict(list),
                                               "segment": defaultdict(list)}  # fmt: skip
    for n, user in enumerate(users):
        groups["answered_by"][strategies[user]].append(n)
        groups["segment"][segment_for(events[user])].append(n)
    return {
        kind: {
            label: {"users": len(rows)}
            | {name: round(float(v[rows].mean()), 4) for name, v in per_user.items()}
            for label, rows in sorted(found.items(), key=lambda kv: -len(kv[1]))
        }
        for kind, found in groups.items()
    }


def score(holdout: Holdout, users: list[str], lists: dict[str, list[str]]) -> dict[str, float]:
    """The protocol's metrics of served lists (unknown ids are misses, seen items too)."""
    ranked, targets = ranked_lists(holdout, users, lists)
    rows = {str(holdout.user_ids[row]): n for n, row in enumerate(holdout.users.tolist())}
    out = rank_metrics(ranked, targets, int(holdout.item_ids.size), ks=(K,))
    x = holdout.matrix().matrix
    seen_share = []
    for r, user in enumerate(users):
        row = holdout.users[rows[user]]
        seen = set(x.indices[x.indptr[row] : x.indptr[row + 1]].tolist())
        got = [i for i in ranked[r].tolist() if i >= 0]
        seen_share.append(sum(1 for i in got if i in seen) / K)
    out["seen_share@20"] = float(np.mean(seen_share)) if seen_share else 0.0
    out["n_users"] = float(len(users))
    return {k: round(v, 4) for k, v in out.items()}


async def replay(args: argparse.Namespace, desc: StackDescription) -> dict[str, Any]:
    t0 = time.perf_counter()
    data = load_online_retail(CSV)
    train_part, test_part, cutoff = temporal_split(data.interactions, TEST_FRACTION)
    holdout = make_holdout(train_part, test_part, cutoff, novel_only=True)
    seen = seen_items(holdout)
    users = sorted(seen)
    if args.max_test_users and len(users) > args.max_test_users:
        pick = np.random.default_rng(0).choice(len(users), args.max_test_users, replace=False)
        users = [users[i] for i in sorted(pick.tolist())]
    prods = products(data.catalog)
    evs = events(train_part)
    print(f"loaded {len(evs):,} training purchases, {len(prods):,} products, "
          f"{len(seen):,} test users ({len(users):,} read) in {time.perf_counter() - t0:.0f}s",
          flush=True)  # fmt: skip

    result: dict[str, Any] = {"load_average_start": [round(x, 2) for x in os.getloadavg()]}
    headers = {"X-API-Key": desc.api_keys["admin"]}
    async with httpx.AsyncClient(timeout=60.0, headers=headers) as http:
        ingest, reco = desc.urls["ingest"], desc.urls["recommender"]
        before = await http.get(f"{reco}/v1/recommendations/nobody", params={"k": 5})
        result["empty_shop_answer"] = {"status": before.status_code, "body": before.json()}
        result["products_s"] = round(
            await post_all(http, ingest + "/v1/products", "products", prods), 1
        )
        result["events_s"] = round(await post_all(http, ingest + EVENTS_PATH, "events", evs), 1)
        print(f"replayed: products {result['products_s']}s, events {result['events_s']}s "
              f"({len(evs) / result['events_s']:.0f}/s)", flush=True)  # fmt: skip
        result["archive_wait_s"] = round(await wait_archived(desc.postgres_dsn, len(evs)), 1)
        counts: dict[str, int] = defaultdict(int)
        for e in evs[-2000:]:
            counts[e["user_id"]] = 0
        for e in evs:
            if e["user_id"] in counts:
                counts[e["user_id"]] += 1
        last_users = dict(list(counts.items())[:20])
        result["profiles_wait_s"] = round(await wait_profiles(http, reco, last_users), 1)
        job = await train(desc)
        version = int(job["model_version"])
        print(f"trained model {version} in {job['wall_s']}s", flush=True)
        result["train_job"] = job
        await wait_served(http, reco, users[0], version)
        served: dict[str, Any] = {}
        answered_exclude: dict[str, str] = {}
        passes = [("exclude_seen", True)] + ([] if args.no_exclude_pass else [("default", False)])
        for label, with_exclude in passes:
            served[label] = {}
            answered: dict[str, dict[str, str]] = {}
            for algorithm in (AUTO, *REGISTRY.served):
                lists, answered[algorithm], seconds = await read_lists(
                    http, reco, users, algorithm, seen if with_exclude else None
                )
                metrics = score(holdout, users, lists)
                served[label][algorithm] = {
                    **metrics,
                    "lists": lists,
                    "seconds": round(seconds, 1),
                    "strategies": tally(answered[algorithm]),
                }
                print(f"{label:13} {algorithm:9} HR@20 {metrics['hr@20']:.3f} NDCG@20 "
                      f"{metrics['ndcg@20']:.4f} seen {metrics['seen_share@20']:.2f} "
                      f"({seconds:.0f}s)", flush=True)  # fmt: skip
            if label == "exclude_seen":
                answered_exclude = answered[AUTO]
        result["served"] = served
        result["auto_breakdown"] = breakdown(
            holdout, users, {a: m["lists"] for a, m in served["exclude_seen"].items()},
            answered_exclude,
        )  # fmt: skip
        popular = [p for p in prods if p["name"] != p["product_id"]][:: max(1, len(prods) // 5)]
        result["new_products"] = await new_product_latency(http, ingest, reco, popular[:5])
        print(f"new products in /similar after {result['new_products']['seconds']} s",
              flush=True)  # fmt: skip
        online = await http.get(f"{reco}/v1/metrics/online")
        result["bandit_view"] = online.json().get("bandit") if online.status_code == 200 else None
        models = (await http.get(desc.urls["trainer"] + "/v1/models")).json()
        result["model"] = next(
            (m for m in models.get("models", []) if m.get("version") == version), None
        )
        uri = (result["model"] or {}).get("artifact_uri", "")
        if uri.startswith("file://"):
            result["topn_lists"] = topn_vs_live(
                holdout, users, Path(uri.removeprefix("file://")),
                served["exclude_seen"]["als"].pop("lists"),
            )  # fmt: skip
        for algos in served.values():
            for m in algos.values():
                m.pop("lists", None)
    result["holdout"] = holdout.summary()
    result["n_users_read"] = len(users)
    return result


def topn_vs_live(
    holdout: Holdout, users: list[str], directory: Path, live: dict[str, list[str]]
) -> dict[str, Any]:
    """The bundle's precomputed lists (``topn.npz``, ALS, for recently active users) against
    the ALS lists served live, on the test users that have a precomputed list."""
    from streamrec_shared.artifacts import ModelBundle

    bundle = ModelBundle.load(directory)
    if bundle.topn is None:
        return {"written": False}
    item_ids = bundle.als.item_ids
    row_of = {u: r for r, u in enumerate(bundle.topn.user_ids.tolist())}
    have = [u for u in users if u in row_of]
    pre = {
        u: [str(item_ids[i]) for i in bundle.topn.items[row_of[u]].tolist() if i >= 0][:K]
        for u in have
    }
    return {
        "written": True,
        "n_users_with_list": len(have),
        "n_users_read": len(users),
        "precomputed": score(holdout, have, pre) if have else None,
        "live_als_same_users": score(holdout, have, live) if have else None,
    }


def offline_references(threads: int) -> dict[str, Any]:
    from streamrec_trainer.offline import run_eval

    report = run_eval(CSV, "online-retail", threads=threads, ks=(K,), progress=False)
    return {
        r.algorithm: {"hr@20": round(r.test["hr@20"], 4), "ndcg@20": round(r.test["ndcg@20"], 4),
                      "params": r.params}
        for r in report.results
    } | {"seconds": round(report.seconds, 1)}  # fmt: skip


def table(result: dict[str, Any]) -> str:
    rows = ["| pass | algorithm | HR@20 | NDCG@20 | seen items in top-20 | main strategy |",
            "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for label, algos in result["served"].items():
        for name, m in algos.items():
            top = next(iter(m["strategies"]), "")
            rows.append(f"| {label} | {name} | {m['hr@20']:.3f} | {m['ndcg@20']:.4f} | "
                        f"{m['seen_share@20']:.2f} | {top} |")  # fmt: skip
    for name, m in (result.get("offline") or {}).items():
        if isinstance(m, dict):
            rows.append(f"| offline (same run) | {name} | {m['hr@20']:.3f} | {m['ndcg@20']:.4f}"
                        " | 0 | |")  # fmt: skip
    return "\n".join(rows)


def verdict(result: dict[str, Any]) -> dict[str, Any]:
    ex = result["served"]["exclude_seen"]
    auto = ex[AUTO]["ndcg@20"]
    singles = {k: v["ndcg@20"] for k, v in ex.items() if k != AUTO}
    best = max(singles, key=lambda k: singles[k])
    return {
        "auto_ndcg@20": auto,
        "best_single": best,
        "best_single_ndcg@20": singles[best],
        "auto_vs_best": round(auto / singles[best], 4) if singles[best] else None,
        "auto_vs_ease_reference": round(auto / REFERENCE_EASE_NDCG, 4),
        "target_auto_vs_best": TARGET_AUTO_VS_BEST,
        "target_auto_vs_ease_reference": TARGET_AUTO_VS_EASE,
        "met_vs_best": auto >= TARGET_AUTO_VS_BEST * singles[best],
        "met_vs_ease": auto >= TARGET_AUTO_VS_EASE * REFERENCE_EASE_NDCG,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-test-users", type=int, default=0, help="0 = every test user")
    parser.add_argument("--no-exclude-pass", action="store_true",
                        help="skip the pass without exclude=")  # fmt: skip
    parser.add_argument("--skip-offline", action="store_true", help="no offline references")
    parser.add_argument("--threads", type=int, default=2, help="offline evaluation threads")
    benchout.add_args(parser, RESULTS)
    parser.add_argument("--state-dir", help="keep the stack's state and logs here")
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if not CSV.exists():
        sys.exit(f"{CSV} not found (the handbook's data folder beside the repository)")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        # the benchmark trains once, when the replay is in: no retraining by itself meanwhile and
        # no canary share (the version is served to every user at once, as the protocol scores it)
        state = Path(args.state_dir) if args.state_dir else Path(tmp)
        stack = LocalStack(state, triggers=False)
        desc = stack.start()
        try:
            result = asyncio.run(replay(args, desc))
        finally:
            stack.stop()
    if not args.skip_offline:
        result["offline"] = offline_references(args.threads)
    result["verdict"] = verdict(result)
    out = {
        "benchmark": "replay",
        "command": "uv run python tests/bench/bench_replay.py " + " ".join(sys.argv[1:]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_bytes": psutil.virtual_memory().total,
            "python": platform.python_version(),
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
        },
        "protocol": "../shared/data/online-retail/README.md: global temporal split, last 20% of "
        "the span is test, novel items only, K=20; lists read through the recommender",
        "events_path": EVENTS_PATH,
        **result,
    }
    print(table(result))
    print(json.dumps(result["verdict"], indent=2))
    if not args.no_write:
        benchout.write(args.out, out)


if __name__ == "__main__":
    main()
