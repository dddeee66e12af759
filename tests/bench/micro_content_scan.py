"""Microbenchmark: what ``content``'s int8-first scan saves per recommendation with context.

In one process, ``Engine.recommend`` on the whole-stack benchmark's synthetic model (100k
products, 64 factors; ``--users`` users) for three kinds of request: ``plain`` (a known user,
no context), ``context`` (a known user with two random products as ``context=``, as the
benchmark's half of its requests) and ``new`` (an unknown user with that context: the recent
items tier). The model is prepared twice, with the content vectors' int8 copy (the default)
and without it (``content_scan_min_items`` above the catalogue: the float32 scan), and the two
are timed alternately ``--rounds`` times; the best round of each is reported, in CPU ms per
request (``time.process_time``), overall and by the algorithm that answered. Set
``OPENBLAS_NUM_THREADS=1`` as the services' pinned workers effectively have one core.

``--hnsw`` also measures the alternative that was rejected: usearch HNSW graphs
(``runtime.index.AnnIndex``, the ALS index's code and recall tuning) over the content vectors,
for queries like a context request's (the mean of two random products): build time, the
tuned recall@20, recall@100 of held-out queries against exact, and CPU ms per search.

Run: ``OPENBLAS_NUM_THREADS=1 uv run python tests/bench/micro_content_scan.py`` (prints;
``--out`` writes JSON).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from streamrec_dev.synthetic_model import make_bundle
from streamrec_recommender.runtime.index import AnnIndex, AnnParams, exact_top
from streamrec_recommender.runtime.model_handle import prepare
from streamrec_recommender.serving.context import Context, Request, TrendingMirror
from streamrec_recommender.serving.engine import Engine, Settings
from streamrec_recommender.serving.model import ServingModel
from streamrec_recommender.serving.policy import ThompsonBandit
from streamrec_recommender.serving.quantised import QuantisedScan
from streamrec_recommender.settings import ServingSettings
from streamrec_shared.algorithms import REGISTRY

KINDS = ("plain", "context", "new")


def requests(kind: str, n: int, items: int, users: int, seed: int) -> list[Request]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        user = f"u{rng.integers(0, users):07d}" if kind != "new" else f"new-{rng.integers(1e9)}"
        context = (
            ()
            if kind == "plain"
            else tuple(f"p{i:06d}" for i in rng.integers(0, items, size=2).tolist())
        )
        out.append(Request(user, 10, context=context))
    return out


def timed(model: ServingModel, reqs: list[Request]) -> dict[str, Any]:
    """CPU ms per request over ``reqs``, overall and by algorithm (after 50 warm-up ones)."""
    engine = Engine(Settings(), ThompsonBandit(list(REGISTRY.arms)), np.random.default_rng(0))
    ctx = Context(
        model=model, catalog=None, unavailable=frozenset(), trending=TrendingMirror(),
        profile=None, attributes=None,
    )  # fmt: skip
    for r in reqs[:50]:
        engine.recommend(r, ctx)
    count: Counter[str] = Counter()
    cpu: Counter[str] = Counter()
    started = time.process_time()
    for r in reqs:
        t0 = time.process_time()
        res = engine.recommend(r, ctx)
        cpu[res.algorithm] += time.process_time() - t0
        count[res.algorithm] += 1
    total = time.process_time() - started
    return {
        "ms_per_request": round(1000 * total / len(reqs), 3),
        "by_algorithm": {a: [count[a], round(1000 * cpu[a] / count[a], 3)] for a in sorted(count)},
    }


def hnsw(vectors: NDArray[np.float32]) -> list[dict[str, Any]]:
    """Recall and cost of HNSW graphs over the content vectors (see the module docstring)."""
    rng = np.random.default_rng(0)
    pairs = vectors[rng.integers(0, vectors.shape[0], size=(400, 2))]
    queries = np.ascontiguousarray(pairs.mean(axis=1), dtype=np.float32)
    tune, held_out = queries[:200], queries[200:]
    truth = exact_top(vectors, held_out, 100)
    out = []
    for connectivity, expansion_add in ((16, 64), (32, 128)):
        params = AnnParams(connectivity=connectivity, expansion_add=expansion_add)
        started = time.perf_counter()
        index = AnnIndex.build(vectors, params, cache_dir=None, version=0, sample_queries=tune)
        built = time.perf_counter() - started
        t0 = time.process_time()
        found = [index.search(q, 100).indices for q in held_out]
        cpu = time.process_time() - t0
        recall = float(np.mean([np.isin(f, t).mean() for f, t in zip(found, truth, strict=True)]))
        row = {
            "connectivity": connectivity,
            "expansion_add": expansion_add,
            "build_s": round(built, 1),
            "expansion_search": index.expansion_search,
            "recall_at_20_tuned": round(index.recall, 3),
            "recall_at_100_held_out": round(recall, 3),
            "search_ms": round(1000 * cpu / len(held_out), 3),
        }
        print(f"hnsw: {row}", flush=True)
        out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hnsw", action="store_true", help="also measure HNSW graphs")
    parser.add_argument("--out")
    args = parser.parse_args()
    bundle = make_bundle(n_items=args.items, n_users=args.users, factors=64, seed=1)
    models = {
        "float32": prepare(bundle, ServingSettings(content_scan_min_items=10 * args.items)),
        "int8": prepare(bundle, ServingSettings(content_scan_min_items=1)),
    }
    vectors = models["float32"].content_factors
    assert vectors is not None
    started = time.perf_counter()
    QuantisedScan.build(vectors)
    results: dict[str, Any] = {
        "content_vectors": int(vectors.shape[0]),
        "int8_build_s": round(time.perf_counter() - started, 3),
    }
    for kind in KINDS:
        reqs = requests(kind, args.requests, args.items, args.users, seed=KINDS.index(kind))
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in models}
        for _ in range(args.rounds):
            for name, model in models.items():
                runs[name].append(timed(model, reqs))
        for name, rows in runs.items():
            best = min(rows, key=lambda r: r["ms_per_request"])
            results[f"{kind}/{name}"] = best
            print(f"{kind:>7} {name:>7}: {best['ms_per_request']:.3f} ms/request, by algorithm "
                  f"[count, ms]: {best['by_algorithm']}", flush=True)  # fmt: skip
    print(f"int8 copy of {results['content_vectors']} vectors built in "
          f"{results['int8_build_s']} s")  # fmt: skip
    if args.hnsw:
        results["hnsw"] = hnsw(vectors)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
