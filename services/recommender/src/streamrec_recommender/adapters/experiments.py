"""Experiments: persisted in Postgres (table ``experiments``), cached in memory and Redis.

Postgres is the source of truth; a copy of every definition is kept in the Redis hash
``sr:experiments`` so pods that start while Postgres is down still split traffic the same way,
and each pod refreshes its in-memory list every ``experiments_refresh_s`` (storage:
``adapters.definitions``). Assignment itself is pure (``policy.Experiment.assign``) and needs no
storage at all.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from streamrec_recommender.adapters.definitions import Database, Definitions
from streamrec_recommender.adapters.redis_state import RedisState
from streamrec_recommender.serving.policy import Experiment, Variant
from streamrec_shared import feedback

REDIS_KEY = feedback.EXPERIMENTS_CACHE

_UPSERT = """
INSERT INTO experiments (name, status, variants, description)
VALUES ($1, $2, $3::jsonb, $4)
ON CONFLICT (name) DO UPDATE SET status = EXCLUDED.status, variants = EXCLUDED.variants,
    description = EXCLUDED.description, updated_at = now()
RETURNING name, status, variants, description, created_at, updated_at
"""
_SELECT = "SELECT name, status, variants, description, created_at, updated_at FROM experiments"


def to_json(exp: Experiment) -> dict[str, Any]:
    return {
        "name": exp.name,
        "status": exp.status,
        "description": exp.description,
        "variants": [
            {"name": v.name, "algorithm": v.algorithm, "weight": v.weight} for v in exp.variants
        ],
        "control": exp.control.name if exp.variants else None,
    }


def from_json(doc: dict[str, Any]) -> Experiment:
    return Experiment(
        name=str(doc["name"]),
        status=str(doc["status"]),
        description=str(doc.get("description") or ""),
        variants=tuple(
            Variant(str(v["name"]), str(v["algorithm"]), float(v["weight"]))
            for v in doc["variants"]
        ),
    )


def _from_row(row: asyncpg.Record) -> Experiment:
    variants = row["variants"]
    if isinstance(variants, str):
        variants = json.loads(variants)
    return from_json(
        {
            "name": row["name"],
            "status": row["status"],
            "description": row["description"],
            "variants": variants,
        }
    )


class ExperimentStore(Definitions[Experiment]):
    """The experiments (table ``experiments``, Redis hash ``sr:experiments``)."""

    def __init__(self, db: Database, redis: RedisState) -> None:
        super().__init__(
            "experiments",
            db,
            redis,
            redis_key=REDIS_KEY,
            select=_SELECT,
            upsert=_UPSERT,
            delete="DELETE FROM experiments WHERE name = $1",
            params=lambda e: (e.name, e.status, json.dumps(to_json(e)["variants"]), e.description),
            from_row=_from_row,
            to_json=to_json,
            from_json=from_json,
        )

    @property
    def running(self) -> list[Experiment]:
        return [e for e in self.all.values() if e.running]
