"""The trainer's admin HTTP API and lifespan: archive consumer, job worker, triggers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import asyncpg
import redis.asyncio as aioredis
from fastapi import FastAPI, Path, Query, Request, Security
from pydantic import BaseModel, ConfigDict, Field

from streamrec_shared import kafka, metrics, topics
from streamrec_shared.artifact_store import ArtifactStore
from streamrec_shared.consumer import DeadLetterPublisher
from streamrec_shared.errors import NotFound
from streamrec_shared.http import (
    API_KEY_HEADER,
    AdminKey,
    KeyRing,
    error_responses,
    install_common,
)
from streamrec_shared.postgres import create_pool
from streamrec_shared.settings import ApiKey
from streamrec_shared.tasks import cancel_all
from streamrec_trainer.archive import Archiver
from streamrec_trainer.jobs import JobRunner
from streamrec_trainer.pipeline import check_settings
from streamrec_trainer.registry import Registry
from streamrec_trainer.rollout import Rollouts
from streamrec_trainer.settings import TrainerSettings, get_settings

logger = logging.getLogger(__name__)

PG_INT_MAX = 2**31 - 1  # model versions are Postgres integers
VersionPath = Annotated[int, Path(ge=1, le=PG_INT_MAX)]

PresentedKey = Annotated[str | None, Security(API_KEY_HEADER)]


def _known_key(request: Request, presented: str | None) -> bool:
    """Any configured key (or no keys configured at all): may read artifact URIs."""
    ring: KeyRing = request.app.state.keyring
    return ring.open or (bool(presented) and ring.settings.find(presented or "") is not None)


class TrainOverrides(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    factors: int | None = Field(default=None, ge=1, le=1024)
    regularization: float | None = Field(default=None, ge=0, le=1e6)
    alpha: float | None = Field(default=None, gt=0, le=1e6)
    iterations: int | None = Field(default=None, ge=1, le=200)
    refit_iterations: int | None = Field(default=None, ge=0, le=200)
    eval_max_users: int | None = Field(default=None, ge=0, le=100_000_000)
    half_life_days: float | None = Field(default=None, gt=0, le=36_500)
    window_days: float | None = Field(default=None, gt=0, le=36_500)
    # 1.0 publishes whatever the holdout says; negative demands an improvement (recorded per job)
    gate_tolerance: float | None = Field(default=None, ge=-1, le=1)
    gate_min_users: int | None = Field(default=None, ge=1, le=1_000_000)


class TrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: TrainOverrides | None = None


class TrainQueued(BaseModel):
    job_id: str


class TrainJob(BaseModel):
    """A training job: status queued|running|published|rejected|failed."""

    job_id: str
    status: str
    reason: str
    params: dict[str, Any]
    model_version: int | None
    metrics: dict[str, Any]
    error: str | None
    created_at: str
    updated_at: str


class ArchiveStats(BaseModel):
    interactions: int
    newest_event: str | None
    consumer_healthy: bool


class DataWindow(BaseModel):
    start: str | None
    end: str | None


class ModelVersion(BaseModel):
    """A model version; ``artifact_uri`` is null without an API key (and once collected)."""

    version: int
    status: str
    active: bool
    params: dict[str, Any]
    metrics: dict[str, Any]
    artifact_uri: str | None
    data_window: DataWindow
    n_interactions: int | None
    created_at: str
    activated_at: str | None
    notes: str | None
    gate: dict[str, Any] | None = None
    """Champion/challenger on one split: both figures and the decision (``pipeline.gate``)."""
    rollout: dict[str, Any] | None = None
    """Canary rollout of this version: state, share, evidence (``rollout.Rollouts``)."""


class RolloutAnswer(BaseModel):
    """``promote`` / ``abort``: the version and its rollout as it now stands."""

    version: int
    rollout: dict[str, Any]


class ModelList(BaseModel):
    active_version: int | None
    canary_version: int | None = None
    models: list[ModelVersion]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return error_responses(
        *codes,
        descriptions={
            403: "the key lacks the admin scope",
            409: "the version cannot be activated",
            422: "invalid request: details name the field",
        },
    )


_ADMIN_ERRORS = (401, 403, 422, 429)
# FastAPI lists the ApiKey requirement; this adds the alternative: anonymous (no artifact URIs)
_OPTIONAL_KEY: list[dict[str, list[str]]] = [{}]


# the two ends of a canary rollout: POST /v1/models/{version}/<action> -> Rollouts.<action>
_ROLLOUT_ENDS: tuple[tuple[Literal["promote", "abort"], str], ...] = (
    ("promote", "End the canary rollout of ``version`` now: activate it for every user."),
    ("abort", "End the canary rollout of ``version`` now: every user back on the active version."),
)


def _end_rollout(
    action: Literal["promote", "abort"],
) -> Callable[[Request, int, ApiKey | None], Awaitable[RolloutAnswer]]:
    """The route that ends ``version``'s canary rollout by ``Rollouts.promote`` or ``.abort``."""

    async def end(request: Request, version: VersionPath, _: AdminKey) -> RolloutAnswer:
        rollouts: Rollouts = request.app.state.rollouts
        rollout = await (rollouts.promote if action == "promote" else rollouts.abort)(version)
        return RolloutAnswer(version=version, rollout=rollout.public())

    return end


def create_app(settings: TrainerSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    check_settings(settings.training)

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
            settings.kafka,
            settings.archive,
            pool,
            dead_letter=DeadLetterPublisher(producer, metrics.TRAINER_ARCHIVE_DLQ),
            on_archived=runner.note_archived,
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

    @app.post(
        "/v1/train", status_code=202, tags=["training"], responses=_errors(400, *_ADMIN_ERRORS)
    )
    async def train(request: Request, _: AdminKey, body: TrainRequest | None = None) -> TrainQueued:
        """Queue a training run; poll ``GET /v1/train/{job_id}``.

        ``params`` optionally overrides training settings for this run only (e.g. to try
        other ALS hyper-parameters); the gate still decides whether it is published.
        """
        overrides = body.params.model_dump(exclude_none=True) if body and body.params else {}
        job_id = await request.app.state.runner.submit("manual", overrides)
        return TrainQueued(job_id=str(job_id))

    @app.get("/v1/train", tags=["training"], responses=_errors(*_ADMIN_ERRORS))
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

    @app.get("/v1/train/{job_id}", tags=["training"], responses=_errors(404, *_ADMIN_ERRORS))
    async def train_status(
        request: Request, job_id: Annotated[uuid.UUID, Path()], _: AdminKey
    ) -> TrainJob:
        """Status (queued|running|published|rejected|failed), offline metrics, model_version."""
        job: dict[str, Any] = await request.app.state.runner.get(job_id)
        return TrainJob(**job)

    @app.get("/v1/archive", tags=["archive"], responses=_errors(*_ADMIN_ERRORS))
    async def archive_stats(request: Request, _: AdminKey) -> ArchiveStats:
        """How much of the event log is archived: row count and newest event time."""
        row = await request.app.state.pool.fetchrow(
            "SELECT count(*) AS n, max(ts) AS newest FROM user_product_interactions"
        )
        return ArchiveStats(
            interactions=row["n"],
            newest_event=row["newest"].isoformat() if row["newest"] else None,
            consumer_healthy=request.app.state.archiver.healthy,
        )

    @app.get("/v1/models", tags=["registry"], openapi_extra={"security": _OPTIONAL_KEY})
    async def models(request: Request, presented: PresentedKey) -> ModelList:
        """Every model version, newest first, with metrics and status; ``artifact_uri`` only
        for a request with an API key (any configured key)."""
        versions = await request.app.state.registry.versions()
        active = next((v.version for v in versions if v.is_active), None)
        uris = _known_key(request, presented)
        rollouts = await request.app.state.rollouts.all()
        models = []
        for v in versions:
            rollout = rollouts.get(v.version)
            shown = v.public(with_uri=uris)
            shown["rollout"] = rollout.public() if rollout else None
            models.append(ModelVersion(**shown))
        canary = next((r.version for r in rollouts.values() if r.state == "canary"), None)
        return ModelList(active_version=active, canary_version=canary, models=models)

    @app.get(
        "/v1/models/active",
        tags=["registry"],
        responses=_errors(404),
        openapi_extra={"security": _OPTIONAL_KEY},
    )
    async def active_model(request: Request, presented: PresentedKey) -> ModelVersion:
        """The active version (404 when none); ``artifact_uri`` only with an API key."""
        current = await request.app.state.registry.active()
        if current is None:
            raise NotFound("no active model")
        return ModelVersion(**current.public(with_uri=_known_key(request, presented)))

    @app.post(
        "/v1/models/{version}/activate",
        tags=["registry"],
        responses=_errors(404, 409, *_ADMIN_ERRORS),
    )
    async def activate(request: Request, version: VersionPath, _: AdminKey) -> ModelVersion:
        """Promote or roll back: make ``version`` active and announce it on models.v1."""
        current = await request.app.state.registry.activate(version)
        await request.app.state.rollouts.on_activated(version)
        return ModelVersion(**current.public())

    for action, description in _ROLLOUT_ENDS:
        app.post(
            f"/v1/models/{{version}}/{action}",
            tags=["registry"],
            responses=_errors(404, 409, *_ADMIN_ERRORS),
            name=action,
            description=description,
        )(_end_rollout(action))

    return app
