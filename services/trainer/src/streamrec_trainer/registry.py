"""The model registry (``model_versions`` in Postgres) and announcements on ``models.v1``."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from streamrec_shared import metrics, topics
from streamrec_shared.artifact_store import ArtifactStore
from streamrec_shared.errors import Conflict, NotFound
from streamrec_shared.events import ModelAnnouncement, encode

logger = logging.getLogger(__name__)

_LOCK = 74_651_202  # pg_advisory_xact_lock key for version numbering and activation

_COLUMNS = """version, status, is_active, params, metrics, artifact_uri, data_start, data_end,
n_interactions, created_at, activated_at, notes"""


@dataclass(frozen=True)
class Version:
    version: int
    status: str
    is_active: bool
    params: dict[str, Any]
    metrics: dict[str, Any]
    artifact_uri: str | None
    data_start: datetime | None
    data_end: datetime | None
    n_interactions: int | None
    created_at: datetime
    activated_at: datetime | None
    notes: str | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Version:
        d = dict(row)
        d["params"] = json.loads(d["params"])
        d["metrics"] = json.loads(d["metrics"])
        return cls(**d)

    def public(self, *, with_uri: bool = True) -> dict[str, Any]:
        """The version as the API shows it; ``artifact_uri`` null unless ``with_uri``."""
        return {
            "version": self.version,
            "status": self.status,
            "active": self.is_active,
            "params": self.params,
            "metrics": self.metrics,
            "artifact_uri": self.artifact_uri if with_uri else None,
            "data_window": {
                "start": self.data_start.isoformat() if self.data_start else None,
                "end": self.data_end.isoformat() if self.data_end else None,
            },
            "n_interactions": self.n_interactions,
            "created_at": self.created_at.isoformat(),
            "activated_at": self.activated_at.isoformat() if self.activated_at else None,
            "notes": self.notes,
            # champion/challenger on one split: both figures and the decision (pipeline.gate)
            "gate": self.metrics.get("gate"),
        }


class Registry:
    def __init__(
        self, pool: asyncpg.Pool, producer: AIOKafkaProducer, store: ArtifactStore, retention: int
    ) -> None:
        self.pool = pool
        self.producer = producer
        self.store = store
        self.retention = retention

    async def versions(self) -> list[Version]:
        sql = f"SELECT {_COLUMNS} FROM model_versions ORDER BY version DESC"
        rows = await self.pool.fetch(sql)
        return [Version.from_row(r) for r in rows]

    async def get(self, version: int) -> Version:
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM model_versions WHERE version = $1",
            version,
        )
        if row is None:
            raise NotFound(f"version: model version {version} does not exist")
        return Version.from_row(row)

    async def active(self) -> Version | None:
        row = await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM model_versions WHERE is_active")
        return Version.from_row(row) if row else None

    async def begin(self, params: dict[str, Any]) -> int:
        """Reserve the next version number (monotonic, never reused)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
            version: int = await conn.fetchval(
                "SELECT coalesce(max(version), 0) + 1 FROM model_versions"
            )
            await conn.execute(
                "INSERT INTO model_versions (version, status, params) VALUES ($1, 'training', $2)",
                version,
                json.dumps(params),
            )
        return version

    async def finish(
        self,
        version: int,
        *,
        status: str,
        metrics_: dict[str, Any],
        artifact_uri: str | None = None,
        data_start: datetime | None = None,
        data_end: datetime | None = None,
        n_interactions: int | None = None,
        notes: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        """Record the outcome of a training run (published, rejected or failed); ``params``
        replace those ``begin`` recorded (settings the run chose on its holdout)."""
        await self.pool.execute(
            """UPDATE model_versions SET status = $2, metrics = $3, artifact_uri = $4,
               data_start = $5, data_end = $6, n_interactions = $7, notes = $8,
               params = coalesce($9::jsonb, params)
               WHERE version = $1""",
            version, status, json.dumps(metrics_), artifact_uri, data_start, data_end,
            n_interactions, notes, None if params is None else json.dumps(params),
        )  # fmt: skip

    async def activate(self, version: int) -> Version:
        """Make ``version`` the active one (promote or roll back) and announce it."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
            row = await conn.fetchrow(
                "SELECT status, artifact_uri FROM model_versions WHERE version = $1", version
            )
            if row is None:
                raise NotFound(f"version: model version {version} does not exist")
            if row["status"] not in ("published", "retired") or row["artifact_uri"] is None:
                raise Conflict(
                    f"version: model version {version} is {row['status']} and cannot be "
                    "activated"
                    + (" (artifacts garbage-collected)" if not row["artifact_uri"] else ""),
                    details={"field": "version", "status": row["status"]},
                )
            await conn.execute(
                "UPDATE model_versions SET is_active = false, status = 'retired' "
                "WHERE is_active AND version <> $1",
                version,
            )
            await conn.execute(
                "UPDATE model_versions SET is_active = true, status = 'published', "
                "activated_at = now() WHERE version = $1",
                version,
            )
        current = await self.get(version)
        await self.announce(current)
        metrics.TRAINER_ACTIVE_VERSION.set(version)
        for algo, values in current.metrics.get("algorithms", {}).items():
            for name, value in values.items():
                if isinstance(value, int | float):
                    metrics.TRAINER_OFFLINE_METRIC.labels(algo, name).set(value)
        await self.collect_garbage()
        return current

    async def announce(self, version: Version) -> None:
        assert version.artifact_uri is not None
        ann = ModelAnnouncement(
            version=version.version,
            artifact_uri=version.artifact_uri,
            activated_at=version.activated_at or datetime.now(UTC),
        )
        await self.producer.send_and_wait(topics.MODELS, encode(ann), key=b"active")
        logger.info("announced model version %s on %s", version.version, topics.MODELS)

    async def collect_garbage(self) -> list[int]:
        """Delete artifacts beyond the newest ``retention`` versions (never the active one)."""
        rows = await self.pool.fetch(
            """SELECT version, artifact_uri FROM model_versions
               WHERE artifact_uri IS NOT NULL AND NOT is_active
               ORDER BY version DESC OFFSET $1""",
            max(0, self.retention - 1),
        )
        removed = []
        for row in rows:
            await asyncio.to_thread(self.store.delete, row["artifact_uri"])  # S3: network I/O
            await self.pool.execute(
                "UPDATE model_versions SET artifact_uri = NULL WHERE version = $1", row["version"]
            )
            removed.append(row["version"])
        # versions in the store that no row points at (a run that failed after its upload)
        referenced = await self.pool.fetch(
            "SELECT version FROM model_versions WHERE artifact_uri IS NOT NULL"
        )
        await asyncio.to_thread(
            self.store.collect_garbage, self.retention, {r["version"] for r in referenced}
        )
        return removed
