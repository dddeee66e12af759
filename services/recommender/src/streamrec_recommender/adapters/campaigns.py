"""Campaigns (marketing boosts), managed through the admin API, applied at serving time.

Persisted in Postgres (table ``campaigns``, the definition as JSON), cached in the Redis hash
``sr:campaigns`` (name -> definition) and mirrored in memory by every pod (refreshed every
``campaigns_refresh_s``; storage: ``adapters.definitions``). See ``ranking.Campaign`` for
semantics.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from streamrec_recommender.adapters.definitions import Database, Definitions
from streamrec_recommender.adapters.redis_state import RedisState
from streamrec_recommender.serving.ranking import Campaign

REDIS_KEY = "sr:campaigns"

_SELECT = "SELECT name, definition FROM campaigns"
_UPSERT = """
INSERT INTO campaigns (name, definition) VALUES ($1, $2::jsonb)
ON CONFLICT (name) DO UPDATE SET definition = EXCLUDED.definition, updated_at = now()
RETURNING name, definition
"""


def to_json(c: Campaign) -> dict[str, Any]:
    return {
        "name": c.name,
        "boost": c.boost,
        "start": c.start,
        "end": c.end,
        "product_ids": list(c.product_ids),
        "categories": list(c.categories),
        "segment": c.segment,
        "enabled": c.enabled,
    }


def from_json(doc: dict[str, Any]) -> Campaign:
    return Campaign(
        name=str(doc["name"]),
        boost=float(doc["boost"]),
        start=float(doc["start"]),
        end=float(doc["end"]),
        product_ids=tuple(str(p) for p in doc.get("product_ids") or ()),
        categories=tuple(str(c) for c in doc.get("categories") or ()),
        segment=doc.get("segment"),
        enabled=bool(doc.get("enabled", True)),
    )


def _from_row(row: asyncpg.Record) -> Campaign:
    doc = row["definition"]
    if isinstance(doc, str):
        doc = json.loads(doc)
    return from_json({**doc, "name": row["name"]})


class CampaignStore(Definitions[Campaign]):
    """The campaigns (table ``campaigns``, Redis hash ``sr:campaigns``)."""

    def __init__(self, db: Database, redis: RedisState) -> None:
        super().__init__(
            "campaigns",
            db,
            redis,
            redis_key=REDIS_KEY,
            select=_SELECT,
            upsert=_UPSERT,
            delete="DELETE FROM campaigns WHERE name = $1",
            params=lambda c: (c.name, json.dumps(to_json(c))),
            from_row=_from_row,
            to_json=to_json,
            from_json=from_json,
            adopt_cache=True,  # campaigns lived in Redis only before migration 0007
        )
