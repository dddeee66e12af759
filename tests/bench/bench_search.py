"""Benchmark of product search (``GET /v1/products/search``) on 100k products.

The search corrects each query word against the catalog's word dictionary (pg_trgm similarity,
GIN trigram index) and matches the corrected words with the products' full-text GIN index
(``streamrec_recommender.adapters.catalog_search``, migration 0006).

A local stack (broker, Redis, Postgres, the recommender only) gets ``--products`` (100k)
catalog rows COPY'd straight into Postgres (names "<brand> <adjective> <noun> <model>", from a
vocabulary of 2,000 made-up brands and 300 nouns), then ``wrk`` sends searches built from a
random product's name: its brand with one typo plus its adjective, or its noun with one typo
(``?q=...&k=20``) at ``--rates`` (100) requests/s, open-loop Poisson arrivals
(tests/bench/loadgen.py), 16 connections, ``--seconds`` per level after a warm-up level.
Target: p99 <= 20 ms at 100 req/s. Also recorded: the CPU per search of the recommender and
Postgres together (less sensitive to other load on the machine than latency), how often the
searched product's words come back in the top 20 (``recall_at_20``), and ``EXPLAIN (ANALYZE,
BUFFERS)`` of each statement of one search. Results: tests/bench/results/search.json.

Run: ``python3 -m uv run --frozen python tests/bench/bench_search.py`` (needs ``wrk``; about
2 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import time
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import benchout
import httpx
import loadgen

from streamrec_dev.localstack.stack import LocalStack
from streamrec_recommender.adapters import catalog_search
from streamrec_recommender.adapters.catalog_search import CatalogSearch

RESULTS = Path(__file__).parent / "results" / "search.json"
CONNECTIONS = 16
CATEGORIES = ["kitchen", "garden", "books", "toys", "sports", "beauty", "fashion", "office"]
ADJECTIVES = ["compact", "deluxe", "smart", "vintage", "classic", "eco", "pro", "mini", "soft"]
LETTERS = "bcdfghjklmnprstvz"
VOWELS = "aeiou"

LUA = r"""
local queries = {}
local n = 0
init = function(args)
  math.randomseed(os.time() * 1000 + math.floor(os.clock() * 1000000))
  for line in io.lines(os.getenv("BENCH_QUERIES")) do
    n = n + 1
    queries[n] = line
  end
end
request = function()
  return wrk.format("GET", "/v1/products/search?k=20&q=" .. queries[math.random(1, n)])
end
"""


def word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(LETTERS) + rng.choice(VOWELS) for _ in range(syllables))


def catalog(n: int, seed: int = 5) -> list[tuple[str, str, str, float, str]]:
    """(product_id, name, category, price, attributes json) rows."""
    rng = random.Random(seed)
    brands = [word(rng, 3) for _ in range(2000)]
    nouns = [word(rng, 2) + rng.choice(["er", "on", "ix", "et"]) for _ in range(300)]
    rows = []
    for i in range(n):
        name = (
            f"{rng.choice(brands)} {rng.choice(ADJECTIVES)} {rng.choice(nouns)} "
            f"{rng.choice(LETTERS).upper()}{rng.randint(100, 999)}"
        )
        attrs = json.dumps({"colour": rng.choice(["red", "blue", "black", "white"])})
        rows.append(
            (f"b{i:07d}", name, rng.choice(CATEGORIES), round(rng.uniform(2, 200), 2), attrs)
        )
    return rows


def typo(rng: random.Random, w: str) -> str:
    i = rng.randrange(len(w))
    return w[:i] + w[i + 1 :] if rng.random() < 0.5 else w[:i] + rng.choice(VOWELS) + w[i + 1 :]


def searches(
    rows: list[tuple[str, str, str, float, str]], n: int, seed: int = 9
) -> list[tuple[str, set[str]]]:
    """(query, the words of the product it was made from that a good answer holds)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = rng.choice(rows)[1].split()  # brand adjective noun model
        if rng.random() < 0.5:
            out.append((f"{typo(rng, parts[0])} {parts[1]}", {parts[0], parts[1]}))
        else:
            out.append((typo(rng, parts[2]), {parts[2]}))
    return out


def queries(rows: list[tuple[str, str, str, float, str]], n: int, seed: int = 9) -> list[str]:
    return [urllib.parse.quote(q) for q, _ in searches(rows, n, seed)]


def recall(url: str, rows: list[tuple[str, str, str, float, str]], n: int = 200) -> float:
    """Share of searches whose top 20 hold a product with the intended (uncorrupted) words."""
    hits = 0
    with httpx.Client(base_url=url, timeout=10) as http:
        for q, want in searches(rows, n, seed=11):
            r = http.get("/v1/products/search", params={"q": q, "k": 20})
            r.raise_for_status()
            hits += any(want <= set(it["name"].split()) for it in r.json()["items"])
    return hits / n


async def explain(dsn: str, q: str) -> dict[str, list[str]]:
    """EXPLAIN (ANALYZE, BUFFERS) of each statement one search of ``q`` runs (as the
    recommender runs them: the same SQL and parameters, on a connection with its settings)."""
    conn = await asyncpg.connect(
        dsn,
        server_settings={"pg_trgm.similarity_threshold": str(catalog_search.CANDIDATE_THRESHOLD)},
    )
    plans: dict[str, list[str]] = {}

    async def fetch(sql: str, *args: Any) -> list[asyncpg.Record]:
        name = next((k for k, v in STATEMENTS.items() if v(sql)), "match")
        key = name if name not in plans else f"{name}_{len(plans)}"
        if name != "word_frequencies":
            explained = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *args)
            plans[key] = [r[0] for r in explained]
        rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
        return rows

    try:
        await CatalogSearch().search(fetch, q, category=None, limit=20, include_inactive=False)
    finally:
        await conn.close()
    return plans


STATEMENTS = {
    "word_frequencies": lambda sql: "pg_stats" in sql,  # cached for minutes: not recorded
    "corrections": lambda sql: "search_words" in sql,
    "best_candidates": lambda sql: "$5::real" in sql,
}


async def load(dsn: str, rows: list[tuple[str, str, str, float, str]]) -> float:
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.executemany(
            "INSERT INTO categories (category_id, name) VALUES ($1, $1) ON CONFLICT DO NOTHING",
            [(c,) for c in CATEGORIES],
        )
        await conn.copy_records_to_table(
            "products",
            records=[(pid, name, cat, price, attrs) for pid, name, cat, price, attrs in rows],
            columns=["product_id", "name", "category_id", "price", "attributes"],
        )
        await conn.execute("ANALYZE products")
        await conn.execute("ANALYZE search_words")
    finally:
        await conn.close()
    return time.perf_counter() - started


def run(stack: LocalStack, args: argparse.Namespace, script: Path, qfile: Path) -> dict[str, Any]:
    assert stack.desc is not None
    rows = catalog(args.products)
    qs = queries(rows, 2000)
    qfile.write_text("\n".join(qs) + "\n")
    took = asyncio.run(load(stack.desc.postgres_dsn, rows))
    print(f"loaded {len(rows)} products in {took:.1f} s", flush=True)
    url = stack.desc.urls["recommender"]
    sample = httpx.get(
        f"{url}/v1/products/search", params={"q": urllib.parse.unquote(qs[0]), "k": 20}
    )
    sample.raise_for_status()
    hits = len(sample.json()["items"])
    print(f"sample query {urllib.parse.unquote(qs[0])!r}: {hits} hits", flush=True)
    found = recall(url, rows)
    print(f"recall@20 of the intended product words: {found:.3f}", flush=True)
    plans = {
        q: asyncio.run(explain(stack.desc.postgres_dsn, q))
        for q in (urllib.parse.unquote(qs[0]), urllib.parse.unquote(qs[1]))
    }
    env = {"BENCH_QUERIES": str(qfile)}
    loadgen.run(url, script, rate=args.rates[0], seconds=5, connections=CONNECTIONS, env=env)
    rec_procs = loadgen.tree(stack.proc("recommender").pid)
    pg_procs = loadgen.tree(stack.proc("postgres").pid)
    procs = rec_procs + pg_procs
    levels = []
    for rate in args.rates:
        cpu0 = loadgen.cpu_seconds(procs)
        rec0 = loadgen.cpu_seconds(rec_procs)
        load0 = os.getloadavg()[0]
        res = loadgen.run(
            url, script, rate=rate, seconds=args.seconds, connections=CONNECTIONS, env=env
        )
        cpu = loadgen.cpu_seconds(procs) - cpu0
        rec_cpu = loadgen.cpu_seconds(rec_procs) - rec0
        res["loadavg_1m_before"] = round(load0, 2)
        res["cpu_ms_per_request_recommender_and_postgres"] = round(
            1000.0 * cpu / max(res["requests"], 1), 3
        )
        res["cpu_ms_per_request_recommender"] = round(1000.0 * rec_cpu / max(res["requests"], 1), 3)
        res["cpu_ms_per_request_postgres"] = round(
            1000.0 * (cpu - rec_cpu) / max(res["requests"], 1), 3
        )
        res["target_met"] = loadgen.sustained(res, 20.0)
        levels.append(res)
        print(
            f"  {rate:>5.0f} req/s offered -> {res['achieved_rps']:.1f} achieved, p50 "
            f"{res['p50_ms']:.2f} ms, p99 {res['p99_ms']:.2f} ms, max {res['max_ms']:.1f} ms, "
            f"errors {res['socket_errors'] + res['status_errors']}, "
            f"CPU {res['cpu_ms_per_request_recommender_and_postgres']} ms/req (recommender "
            f"{res['cpu_ms_per_request_recommender']}, Postgres "
            f"{res['cpu_ms_per_request_postgres']}) "
            f"(load {res['loadavg_1m_before']})",
            flush=True,
        )
    return {
        "benchmark": (
            "product search (word correction: pg_trgm GIN on the word dictionary;"
            " match: GIN tsvector)"
        ),
        "command": " ".join(sys.argv),
        "when": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "load_generator": loadgen.describe(CONNECTIONS),
        "products": args.products,
        "load_seconds": round(took, 1),
        "sample_hits": hits,
        "recall_at_20": round(found, 3),
        "target": "p99 <= 20 ms at 100 req/s, no errors",
        "levels": levels,
        "explain": plans,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")],
                        default=[100.0])  # fmt: skip
    parser.add_argument("--seconds", type=int, default=30)
    benchout.add_args(parser, RESULTS)
    args = parser.parse_args()
    loadgen.prepare()
    with loadgen.on_stack("search", LUA, services=("recommender",)) as (stack, script):
        results = run(stack, args, script, script.parent / "queries.txt")
    if not args.no_write:
        benchout.write(args.out, results)


if __name__ == "__main__":
    main()
