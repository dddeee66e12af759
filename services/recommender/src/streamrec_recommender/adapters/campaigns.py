"""Campaigns (marketing boosts), managed through the admin API, applied at serving time.

Stored as JSON in the Redis hash ``sr:campaigns`` (name -> definition) and mirrored in memory
by every pod (refreshed every ``campaigns_refresh_s``). See ``ranking.Campaign`` for semantics.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from streamrec_recommender.adapters.redis_state import RedisState
from streamrec_recommender.serving.ranking import Campaign

logger = logging.getLogger(__name__)

REDIS_KEY = "sr:campaigns"


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


class CampaignStore:
    def __init__(self, redis: RedisState) -> None:
        self.redis = redis
        self.all: dict[str, Campaign] = {}

    async def refresh(self) -> None:
        raw = await self.redis.bg(lambda: self.redis.background.hgetall(REDIS_KEY))
        out: dict[str, Campaign] = {}
        for k, v in raw.items():
            try:
                c = from_json(json.loads(v))
            except (ValueError, KeyError, TypeError):
                logger.warning("ignoring malformed campaign %r", k)
                continue
            out[c.name] = c
        self.all = out

    async def put(self, campaign: Campaign) -> Campaign:
        doc = json.dumps(to_json(campaign))
        await self.redis.bg(lambda: self.redis.background.hset(REDIS_KEY, campaign.name, doc))
        self.all = {**self.all, campaign.name: campaign}
        return campaign

    async def delete(self, name: str) -> bool:
        n = await self.redis.bg(lambda: self.redis.background.hdel(REDIS_KEY, name))
        self.all = {k: v for k, v in self.all.items() if k != name}
        return bool(n)
