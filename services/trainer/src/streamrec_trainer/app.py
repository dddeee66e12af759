"""The trainer's admin HTTP API and lifespan: archive consumer, job worker, triggers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
import redis.asyncio as aioredis
from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from streamrec_shared import kafka, topics
from streamrec_shared.artifact_store import ArtifactStore
from streamrec_shared.http import AdminKey, KeyRing, install_common
from streamrec_shared.postgres import create_pool
from streamrec_shared.tasks import cancel_all
from streamrec_trainer.archive import Archiver
from streamrec_trainer.jobs import JobRunner
from streamrec_trainer.registry import Registry
from streamrec_trainer.rollout import Rollouts
from streamrec_trainer.settings import TrainerSettings, get_settings

logger = logging.getLogger(__name__)


class TrainOverrides(BaseModel):
    model_config = ConfigDict(extra="forbid")

    factors: int | None = Field(default=None, ge=1, le=1024)
    regularization: float | None = Field(default=None, ge=0)
    alpha: float | None = Field(default=None, gt=0)
    iterations: int | None = Field(default=None, ge=1, le=200)
    refit_iterations: int | None = Field(default=None, ge=0, le=200)
    eval_max_users: int | None = Field(default=None, ge=0)
    half_life_days: float | None = Field(default=None, gt=0)
    window_days: float | None = Field(default=None, gt=0)
    # 1.0 publishes whatever the holdout says; negative demands an improvement (recorded per job)
    gate_tolerance: float | None = Field(default=None, ge=-1, le=1)
    gate_min_users: int | None = Field(default=None, ge=1, le=1_000_000)


class TrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: TrainOverrides | None = None


def create_app(settings: TrainerSettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.kafka.create_topics:
            await kafka.ensure_topics(
                settings.kafka, topics.topic_specs(settings.kafka.events_partitions)
            )
        pool = await create_pool(settings.postgres)
        producer = kafka.producer(settings.kafka)
        await producer.start()
        store = ArtifactStore.from_settings(settings.artifacts)
        registry = Registry(pool, producer, store, settings.artifacts.retention)
        redis = aioredis.Redis.from_url(settings.redis.url.get_secret_value())
        rollouts = Rollouts(pool, registry, redis, settings.training)
        runner = JobRunner(
            pool,
            registry,
            store,
            settings.training,
            artifact_settings=settings.artifacts,
            rollouts=rollouts,
        )
        archiver = Archiver(
            settings.kafka, settings.archive, pool, on_archived=runner.note_archived
        )
        await runner.recover()
        tasks = [
            asyncio.create_task(archiver.run(), name="archive"),
            asyncio.create_task(runner.worker(), name="train-worker"),
            asyncio.create_task(runner.triggers(), name="train-triggers"),
            asyncio.create_task(rollouts.run(), name="rollout-check"),
        ]
        app.state.rollouts = rollouts
        app.state.pool, app.state.registry, app.state.runner = pool, registry, runner
        app.state.archiver = archiver
        try:
            yield
        finally:
            await cancel_all(tasks)
            await redis.aclose()
            await producer.stop()
            await pool.close()

    app = FastAPI(
        title="streamrec trainer",
        version="1",
        lifespan=lifespan,
        description="Archive, training jobs and the model registry.",
    )
    app.state.keyring = KeyRing(settings.auth)

    async def readiness() -> dict[str, bool]:
        pool: asyncpg.Pool | None = getattr(app.state, "pool", None)
        pg = False
        if pool is not None:
            with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
                pg = await pool.fetchval("SELECT 1", timeout=1) == 1
        archiver: Archiver | None = getattr(app.state, "archiver", None)
        return {"postgres": pg, "kafka": bool(archiver and archiver.healthy)}

    install_common(app, service="trainer", http=settings.http, readiness=readiness)

    @app.post("/v1/train", status_code=202, tags=["training"])
    async def train(
        request: Request, _: AdminKey, body: TrainRequest | None = None
    ) -> dict[str, str]:
        """Queue a training run; poll ``GET /v1/train/{job_id}``.

        ``params`` optionally overrides training settings for this run only (e.g. to try
        other ALS hyper-parameters); the gate still decides whether it is published.
        """
        overrides = body.params.model_dump(exclude_none=True) if body and body.params else {}
        job_id = await request.app.state.runner.submit("manual", overrides)
        return {"job_id": str(job_id)}

    @app.get("/v1/train", tags=["training"])
    async def train_jobs(
        request: Request, _: AdminKey, limit: Annotated[int, Query(ge=1, le=500)] = 50
    ) -> dict[str, Any]:
        """Recent training jobs, newest first: status, reason (manual | schedule | events:N),
        model version, error; and the triggers in force (0 = off)."""
        runner: JobRunner = request.app.state.runner
        return {
            "jobs": await runner.recent(limit),
            "triggers": {
                "interval_s": runner.settings.interval_s,
                "after_events": runner.settings.after_events,
                "events_since_last_run": runner.new_events,
            },
        }

    @app.get("/v1/train/{job_id}", tags=["training"])
    async def train_status(
        request: Request, job_id: Annotated[uuid.UUID, Path()], _: AdminKey
    ) -> dict[str, Any]:
        """Status (queued|running|published|rejected|failed), offline metrics, model_version."""
        job: dict[str, Any] = await request.app.state.runner.get(job_id)
        return job

    @app.get("/v1/archive", tags=["archive"])
    async def archive_stats(request: Request, _: AdminKey) -> dict[str, Any]:
        """How much of the event log is archived: row count and newest event time."""
        row = await request.app.state.pool.fetchrow(
            "SELECT count(*) AS n, max(ts) AS newest FROM user_product_interactions"
        )
        return {
            "interactions": row["n"],
            "newest_event": row["newest"].isoformat() if row["newest"] else None,
            "consumer_healthy": request.app.state.archiver.healthy,
        }

    @app.get("/v1/models", tags=["registry"])
    async def models(request: Request) -> dict[str, Any]:
        """Every model version, newest first, with metrics and status."""
        versions = await request.app.state.registry.versions()
        active = next((v.version for v in versions if v.is_active), None)
        rollouts = await request.app.state.rollouts.all()
        models = []
        for v in versions:
            shown = v.public()
            rollout = rollouts.get(v.version)
            shown["rollout"] = rollout.public() if rollout else None
            models.append(shown)
        canary = next((r.version for r in rollouts.values() if r.state == "canary"), None)
        return {"active_version": active, "canary_version": canary, "models": models}

    @app.get("/v1/models/active", tags=["registry"])
    async def active_model(request: Request) -> JSONResponse:
        current = await request.app.state.registry.active()
        if current is None:
            return JSONResponse(
                {"error": {"code": "not_found", "message": "no active model", "details": None}},
                404,
            )
        return JSONResponse(current.public())

    @app.post("/v1/models/{version}/activate", tags=["registry"])
    async def activate(
        request: Request, version: Annotated[int, Path(ge=1)], _: AdminKey
    ) -> dict[str, Any]:
        """Promote or roll back: make ``version`` active and announce it on models.v1."""
        current = await request.app.state.registry.activate(version)
        await request.app.state.rollouts.on_activated(version)
        result: dict[str, Any] = current.public()
        return result

    @app.post("/v1/models/{version}/promote", tags=["registry"])
    async def promote(
        request: Request, version: Annotated[int, Path(ge=1)], _: AdminKey
    ) -> dict[str, Any]:
        """End the canary rollout of ``version`` now: activate it for every user."""
        rollout = await request.app.state.rollouts.promote(version)
        return {"version": version, "rollout": rollout.public()}

    @app.post("/v1/models/{version}/abort", tags=["registry"])
    async def abort(
        request: Request, version: Annotated[int, Path(ge=1)], _: AdminKey
    ) -> dict[str, Any]:
        """End the canary rollout of ``version`` now: every user back on the active version."""
        rollout = await request.app.state.rollouts.abort(version)
        return {"version": version, "rollout": rollout.public()}

    return app
