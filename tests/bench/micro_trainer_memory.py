"""Focused measurement: the trainer's memory across retrains of the same data, in one process.

Why: the soak (README, "Soak") saw the trainer's RSS grow 322 MB -> 1.37 GB over three
retrains on a growing archive. This tells a leak (objects of earlier runs kept alive) from the
allocator keeping freed memory: a private Postgres with a fixed synthetic log
(``bench_trainer.generate``, loaded by ``bench_trainer.load_postgres``), then ``--runs``
training jobs through the trainer's own ``JobRunner`` (queue, ``pipeline.run``: load,
evaluate, fit, publish to a temporary artifact store, activate; the gate off so every run
fits and publishes, as the soak's did), run by its worker task. After each job, in the same
process:

- ``rss_mb``: resident set size (``/proc/self/status`` VmRSS);
- ``heap_in_use_mb`` / ``heap_free_mb`` / ``mmapped_mb``: glibc's ``mallinfo2``: bytes the
  program holds in malloc's arenas, bytes freed but kept by them, bytes in mmapped chunks;
- ``arenas``: malloc arenas (one per thread that allocated, up to 8 per core);
- ``py_objects``: objects the garbage collector tracks, and ``ndarrays`` among them;
- with ``--tracemalloc``: ``traced_mb``, Python's and numpy's live allocations (numpy reports
  its data buffers to tracemalloc).

A leak shows as growing ``py_objects``/``ndarrays``/``traced_mb``; the allocator as growing
``heap_free_mb`` with flat live allocations. ``MALLOC_ARENA_MAX`` is read by glibc at start:
set it in the environment to compare (e.g. ``MALLOC_ARENA_MAX=2``); ``--no-release`` skips the
worker's ``jobs.release_freed_memory`` (the trainer before it).

Run: ``uv run python tests/bench/micro_trainer_memory.py [--interactions 500000] [--runs 6]``
(prints one JSON line per job; ``--out`` writes them all). The runs behind the README's
paragraph (before and after ``jobs.release_freed_memory``): tests/bench/results/trainer_memory.json.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import os
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import bench_trainer  # the synthetic log and its loader (this directory is on sys.path)
import numpy as np

from streamrec_dev.localstack import infra
from streamrec_dev.localstack.processes import free_port, stop
from streamrec_shared.artifact_store import ArtifactStore
from streamrec_shared.postgres import create_pool
from streamrec_shared.settings import PostgresSettings
from streamrec_trainer import jobs
from streamrec_trainer.jobs import JobRunner
from streamrec_trainer.registry import Registry
from streamrec_trainer.settings import TrainingSettings


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


_LIBC = ctypes.CDLL("libc.so.6")
_LIBC.mallinfo2.restype = _Mallinfo2
_LIBC.fdopen.restype = ctypes.c_void_p
_LIBC.fdopen.argtypes = [ctypes.c_int, ctypes.c_char_p]
_LIBC.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
_LIBC.fclose.argtypes = [ctypes.c_void_p]


class NoAnnouncements:
    """Stands in for the Kafka producer: activation announces on models.v1, not measured."""

    async def send_and_wait(self, *args: Any, **kwargs: Any) -> None:
        return None


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def arenas() -> int:
    """malloc arenas: the main one plus those listed by ``malloc_info`` (one per heap)."""
    with tempfile.TemporaryFile(mode="w+") as f:
        libc_file = _LIBC.fdopen(os.dup(f.fileno()), b"w")
        _LIBC.malloc_info(0, libc_file)
        _LIBC.fclose(libc_file)
        f.seek(0)
        return f.read().count("<heap nr=")


def sample(run: int, status: str, seconds: float) -> dict[str, Any]:
    gc.collect()
    info = _LIBC.mallinfo2()
    objects = gc.get_objects()
    out: dict[str, Any] = {
        "run": run,
        "status": status,
        "seconds": round(seconds, 1),
        "rss_mb": round(rss_mb(), 1),
        "heap_in_use_mb": round(info.uordblks / 2**20, 1),
        "heap_free_mb": round(info.fordblks / 2**20, 1),
        "mmapped_mb": round(info.hblkhd / 2**20, 1),
        "arenas": arenas(),
        "threads": threading.active_count(),
        "py_objects": len(objects),
        "ndarrays": sum(1 for o in objects if isinstance(o, np.ndarray)),
    }
    if tracemalloc.is_tracing():
        out["traced_mb"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 1)
    return out


async def measure(args: argparse.Namespace, dsn: str, root: Path) -> list[dict[str, Any]]:
    pool = await create_pool(PostgresSettings(dsn=dsn, max_size=4))  # migrates
    log = bench_trainer.generate(args.interactions)
    await bench_trainer.load_postgres(dsn, log)
    del log
    store = ArtifactStore.open(f"file://{root / 'artifacts'}")
    registry = Registry(pool, NoAnnouncements(), store, retention=3)
    settings = TrainingSettings(gate_tolerance=1.0, threads=args.threads)
    runner = JobRunner(pool, registry, store, settings)
    if args.tracemalloc:
        tracemalloc.start()
    rows = [sample(0, "before", 0.0)]
    print(json.dumps(rows[0]), flush=True)
    worker = asyncio.create_task(runner.worker())
    for run in range(1, args.runs + 1):
        started = time.perf_counter()
        job_id = await runner.submit("manual")
        job = await runner.get(job_id)
        while job["status"] in ("queued", "running") or runner.busy:
            await asyncio.sleep(0.2)
            job = await runner.get(job_id)
        rows.append(sample(run, job["status"], time.perf_counter() - started))
        print(json.dumps(rows[-1]), flush=True)
    worker.cancel()
    await pool.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interactions", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument(
        "--no-release",
        action="store_true",
        help="skip the worker's release_freed_memory after each job (the code before it)",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.no_release:
        jobs.release_freed_memory = lambda: None
    with tempfile.TemporaryDirectory(prefix="trainer-memory-") as tmp:
        root = Path(tmp)
        port = free_port()
        proc = infra.start_postgres(port, root / "pg", root)
        try:
            dsn = f"postgresql://streamrec@127.0.0.1:{port}/streamrec"
            rows = asyncio.run(measure(args, dsn, root))
        finally:
            stop(proc)
    result = {
        "interactions": args.interactions,
        "threads": args.threads,
        "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),
        "release_after_each_job": not args.no_release,
        "runs": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
