"""Training jobs: a queue with one worker; each job loads, fits, evaluates, gates and publishes.

Jobs come from ``POST /v1/train`` (reason ``manual``), the schedule (``schedule``) and the
new-event counter (``events:N``); the reason is stored with the job. CPU-heavy work runs
in a thread so the archive consumer and the HTTP API keep answering while a model trains.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from streamrec_shared import metrics
from streamrec_shared.artifact_store import ArtifactStore
from streamrec_shared.errors import NotFound
from streamrec_shared.settings import ArtifactSettings
from streamrec_trainer import pipeline
from streamrec_trainer.registry import Registry
from streamrec_trainer.rollout import Rollouts
from streamrec_trainer.settings import TrainingSettings

logger = logging.getLogger(__name__)


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None elsewhere: musl, macOS)."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_MALLOC_TRIM = _malloc_trim()


def release_freed_memory() -> None:
    """Give the memory a job freed back to the OS.

    A job's big temporaries (the window's arrays, sparse matrices, factors, scores: hundreds of
    MB) are allocated from the threads it runs on, so glibc spreads them over up to 8 malloc
    arenas per core, and keeps what they free for reuse instead of returning it: measured with
    ``tests/bench/micro_trainer_memory.py`` (300k interactions, 6 retrains of the same data in
    one process), the memory the program held stayed at 22 MB after every job while RSS grew
    125 -> 467 MB, 337 MB of it freed but kept by 8 arenas (no object of a job outlived it).
    ``malloc_trim(0)`` returns the free pages of every arena (README, "Soak")."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


@dataclass
class JobRunner:
    pool: asyncpg.Pool
    registry: Registry
    store: ArtifactStore
    settings: TrainingSettings
    artifact_settings: ArtifactSettings | None = None
    rollouts: Rollouts | None = None

    def __post_init__(self) -> None:
        self.queue: asyncio.Queue[uuid.UUID] = asyncio.Queue()
        self.new_events = 0
        self.busy = False

    async def submit(self, reason: str, overrides: dict[str, Any] | None = None) -> uuid.UUID:
        job_id = uuid.uuid4()
        await self.pool.execute(
            "INSERT INTO train_jobs (job_id, status, reason, params) VALUES ($1, 'queued', $2, $3)",
            job_id,
            reason,
            json.dumps(overrides or {}),
        )
        await self.queue.put(job_id)
        return job_id

    async def get(self, job_id: uuid.UUID) -> dict[str, Any]:
        row = await self.pool.fetchrow(
            "SELECT job_id, status, reason, params, version, metrics, error, created_at, "
            "updated_at FROM train_jobs WHERE job_id = $1",
            job_id,
        )
        if row is None:
            raise NotFound(f"job_id: training job {job_id} does not exist")
        return self._public(row)

    async def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest ``limit`` jobs, newest first, without their metrics (the registry has
        them per version): job id, status, reason (manual | schedule | events:N), params,
        model version, error, times."""
        rows = await self.pool.fetch(
            "SELECT job_id, status, reason, params, version, error, created_at, updated_at "
            "FROM train_jobs ORDER BY created_at DESC LIMIT $1",
            limit,
        )
        jobs = []
        for row in rows:
            job = self._public(row)
            del job["metrics"]
            jobs.append(job)
        return jobs

    @staticmethod
    def _public(row: asyncpg.Record) -> dict[str, Any]:
        return {
            "job_id": str(row["job_id"]),
            "status": row["status"],
            "reason": row["reason"],
            "params": json.loads(row["params"]),
            "model_version": row["version"],
            "metrics": json.loads(row["metrics"]) if "metrics" in row else {},
            "error": row["error"],
            "created_at": row["created_at"].isoformat(),
            "updated_at": row["updated_at"].isoformat(),
        }

    def note_archived(self, n: int) -> None:
        self.new_events += n

    async def _set(self, job_id: uuid.UUID, status: str, **fields: Any) -> None:
        await self.pool.execute(
            """UPDATE train_jobs SET status = $2, version = coalesce($3, version),
               metrics = coalesce($4, metrics), error = $5, updated_at = now()
               WHERE job_id = $1""",
            job_id,
            status,
            fields.get("version"),
            json.dumps(fields["metrics"]) if "metrics" in fields else None,
            fields.get("error"),
        )

    async def recover(self) -> None:
        """Jobs left queued/running by a previous process: fail the running, requeue the queued."""
        await self.pool.execute(
            "UPDATE train_jobs SET status = 'failed', error = 'trainer restarted', "
            "updated_at = now() WHERE status = 'running'"
        )
        await self.pool.execute(
            "UPDATE model_versions SET status = 'failed', notes = 'trainer restarted' "
            "WHERE status = 'training'"
        )
        for row in await self.pool.fetch(
            "SELECT job_id FROM train_jobs WHERE status = 'queued' ORDER BY created_at"
        ):
            await self.queue.put(row["job_id"])

    async def worker(self) -> None:
        while True:
            job_id = await self.queue.get()
            self.busy = True
            try:
                await self._run(job_id)
            except Exception as exc:  # loop boundary: one failed job must not stop the worker
                logger.exception("training job %s failed", job_id)
                metrics.TRAINER_RUNS.labels("failed").inc()
                await self._set(job_id, "failed", error=f"{type(exc).__name__}: {exc}")
            finally:
                await asyncio.to_thread(release_freed_memory)
                self.busy = False

    async def _run(self, job_id: uuid.UUID) -> None:
        await self._set(job_id, "running")
        self.new_events = 0
        started = time.perf_counter()
        overrides = await self.pool.fetchval(
            "SELECT params FROM train_jobs WHERE job_id = $1", job_id
        )
        settings = self.settings.model_copy(update=json.loads(overrides))
        outcome = await pipeline.run(
            self.pool, self.registry, self.store, settings, self.artifact_settings, self.rollouts
        )
        logger.info(
            "training job %s: %s version %s in %.1fs",
            job_id, outcome.status, outcome.version, time.perf_counter() - started,
        )  # fmt: skip
        metrics.TRAINER_RUNS.labels(outcome.status).inc()
        await self._set(
            job_id,
            outcome.status,
            version=outcome.version,
            metrics=outcome.metrics,
            error=outcome.reason if outcome.status != "published" else None,
        )

    async def triggers(self) -> None:
        """The schedule and the new-event threshold (settings; either may be off). A job says
        why it ran: ``schedule`` or ``events:N`` (N events archived since the last run began)."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            due_time = self.settings.interval_s > 0 and (
                time.monotonic() - last >= self.settings.interval_s
            )
            due_events = 0 < self.settings.after_events <= self.new_events
            if (due_time or due_events) and not self.busy and self.queue.empty():
                last = time.monotonic()
                reason = f"events:{self.new_events}" if due_events else "schedule"
                await self.submit(reason)
