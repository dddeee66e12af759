"""Gradual rollout: a newly published version serves a canary share of users first; the online
hit rates of canary and active version decide whether it is promoted or rolled back.

* ``start``: a published version (not the first one) becomes the canary (``model_rollouts``
  row, state ``canary``, ``share`` of users by a consistent hash of the user id: the recommender
  reads the row, holds both versions and routes each user to one of them,
  ``streamrec_recommender.runtime.model_handle.in_canary``);
* the recommender labels every answer of the rollout with the experiment ``rollout<version>``
  and the variant ``canary`` or ``control`` (the active version) in its rec id, so impressions,
  clicks and hits are counted per version in the online counters (``streamrec_shared.feedback``:
  Redis ``sr:on:<minute>``, fields ``<kind>|<algorithm>|<segment>|<experiment>|<variant>``)
  without any other lookup;
* ``check`` (every ``rollout_check_s``): once both sides have ``rollout_min_impressions``
  impressions, a one-sided two-proportion z-test of the canary's hit rate against the active
  version's: z <= -``rollout_z`` (the canary is worse) rolls it back (the active version stays),
  anything else promotes it (activation, announced on models.v1);
* ``promote`` / ``abort``: the same by hand (``POST /v1/models/{version}/promote|abort``); a
  newer canary supersedes an older one (aborted), activating another version aborts it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from streamrec_shared import feedback, metrics
from streamrec_shared.errors import Conflict, NotFound
from streamrec_trainer.registry import Registry
from streamrec_trainer.settings import TrainingSettings

logger = logging.getLogger(__name__)

STATES = ("canary", "promoted", "rolled_back", "aborted")


def experiment_name(version: int) -> str:
    """The experiment label of a rollout in rec ids and counters."""
    return f"rollout{version}"


@dataclass(frozen=True)
class Rollout:
    version: int
    state: str
    share: float
    baseline: int | None
    evidence: dict[str, Any]
    started_at: datetime
    decided_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Rollout:
        d = dict(row)
        d["evidence"] = json.loads(d["evidence"])
        return cls(**d)

    def public(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "share": self.share,
            "baseline": self.baseline,
            "experiment": experiment_name(self.version),
            "evidence": self.evidence,
            "started_at": self.started_at.isoformat(),
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
        }


def compare(
    counts: dict[str, dict[str, int]], min_impressions: int, z_crit: float
) -> dict[str, Any]:
    """The evidence of a rollout from its counters per variant ({"canary"|"control": {"imp",
    "hit", "clk"}}): hit rates, z of canary vs control, and the verdict (``wait``,
    ``promote``, ``roll_back``)."""
    c, a = counts.get("canary", {}), counts.get("control", {})
    n_c, n_a = c.get("imp", 0), a.get("imp", 0)
    h_c, h_a = min(c.get("hit", 0), n_c), min(a.get("hit", 0), n_a)
    out: dict[str, Any] = {
        "canary": {"impressions": n_c, "hits": h_c, "clicks": c.get("clk", 0)},
        "control": {"impressions": n_a, "hits": h_a, "clicks": a.get("clk", 0)},
        "min_impressions": min_impressions,
        "z_crit": z_crit,
        "z": None,
    }
    for side, n, h in (("canary", n_c, h_c), ("control", n_a, h_a)):
        out[side]["hit_rate"] = round(h / n, 6) if n else None
    if n_c < min_impressions or n_a < min_impressions:
        out["verdict"] = "wait"
        return out
    pooled = (h_c + h_a) / (n_c + n_a)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_c + 1.0 / n_a))
    diff = h_c / n_c - h_a / n_a
    z = diff / se if se > 0 else 0.0
    out["z"] = round(z, 3)
    out["verdict"] = "roll_back" if z <= -z_crit else "promote"
    return out


class Rollouts:
    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: Registry,
        redis: aioredis.Redis | None,
        settings: TrainingSettings,
    ) -> None:
        self.pool = pool
        self.registry = registry
        self.redis = redis
        self.settings = settings
        self._lock = asyncio.Lock()

    async def all(self) -> dict[int, Rollout]:
        rows = await self.pool.fetch("SELECT * FROM model_rollouts")
        return {r["version"]: Rollout.from_row(r) for r in rows}

    async def current(self) -> Rollout | None:
        row = await self.pool.fetchrow("SELECT * FROM model_rollouts WHERE state = 'canary'")
        return Rollout.from_row(row) if row else None

    def _gauges(self, canary: Rollout | None) -> None:
        metrics.TRAINER_CANARY_VERSION.set(canary.version if canary else 0)
        metrics.TRAINER_CANARY_SHARE.set(canary.share if canary else 0.0)

    async def start(self, version: int, baseline: int, share: float) -> Rollout:
        """``version`` (published, not active) serves ``share`` of users from now on."""
        async with self._lock:
            old = await self.current()
            if old is not None:
                await self._end(old, "aborted", "system", {"reason": f"superseded by {version}"})
            row = await self.pool.fetchrow(
                "INSERT INTO model_rollouts (version, state, share, baseline) "
                "VALUES ($1, 'canary', $2, $3) RETURNING *",
                version, share, baseline,
            )  # fmt: skip
            rollout = Rollout.from_row(row)
        self._gauges(rollout)
        logger.info("version %d: canary for %.0f%% of users", version, share * 100)
        return rollout

    async def _end(
        self, rollout: Rollout, state: str, by: str, evidence: dict[str, Any]
    ) -> Rollout:
        row = await self.pool.fetchrow(
            "UPDATE model_rollouts SET state = $2, evidence = $3, decided_at = now() "
            "WHERE version = $1 RETURNING *",
            rollout.version, state, json.dumps({**evidence, "by": by}),
        )  # fmt: skip
        metrics.TRAINER_ROLLOUT_DECISIONS.labels(state, by).inc()
        self._gauges(None)
        logger.info("version %d: rollout %s (%s)", rollout.version, state, by)
        return Rollout.from_row(row)

    async def _canary(self, version: int) -> Rollout:
        rollout = (await self.all()).get(version)
        if rollout is None:
            raise NotFound(f"version: model version {version} has no rollout")
        if rollout.state != "canary":
            raise Conflict(
                f"version: the rollout of model version {version} is {rollout.state}",
                details={"field": "version", "state": rollout.state},
            )
        return rollout

    async def promote(self, version: int, by: str = "admin") -> Rollout:
        async with self._lock:
            rollout = await self._canary(version)
            evidence = await self.evidence(rollout)
            await self.registry.activate(version)
            return await self._end(rollout, "promoted", by, evidence)

    async def abort(self, version: int, by: str = "admin", state: str = "aborted") -> Rollout:
        async with self._lock:
            rollout = await self._canary(version)
            return await self._end(rollout, state, by, await self.evidence(rollout))

    async def on_activated(self, version: int) -> None:
        """A version was activated by hand: its canary is promoted, another one aborted."""
        async with self._lock:
            rollout = await self.current()
            if rollout is None:
                return
            state = "promoted" if rollout.version == version else "aborted"
            await self._end(rollout, state, "activate", await self.evidence(rollout))

    async def counts(self, rollout: Rollout) -> dict[str, dict[str, int]]:
        """imp/hit/clk per variant of the rollout's experiment, summed over its minutes."""
        if self.redis is None:
            return {}
        first = int(rollout.started_at.timestamp() // feedback.BUCKET_S)
        last = int(time.time() // feedback.BUCKET_S)
        keys = [feedback.bucket_key(m) for m in range(first, last + 1)][-10_080:]
        exp = experiment_name(rollout.version)
        out: dict[str, dict[str, int]] = {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            buckets = await pipe.execute()
        for bucket in buckets:
            for raw, n in bucket.items():
                parsed = feedback.parse_field(raw)
                if parsed is None or parsed.experiment != exp:
                    continue
                slot = out.setdefault(parsed.variant, {})
                slot[parsed.kind] = slot.get(parsed.kind, 0) + int(n)
        return out

    async def evidence(self, rollout: Rollout) -> dict[str, Any]:
        try:
            counts = await self.counts(rollout)
        except (OSError, aioredis.RedisError) as exc:
            return {"error": f"online counters unavailable: {exc}"}
        return compare(counts, self.settings.rollout_min_impressions, self.settings.rollout_z)

    async def check(self) -> Rollout | None:
        """Decide the current canary when the evidence suffices; record it meanwhile."""
        rollout = await self.current()
        self._gauges(rollout)
        if rollout is None:
            return None
        evidence = await self.evidence(rollout)
        verdict = evidence.get("verdict")
        if verdict == "promote":
            return await self.promote(rollout.version, by="auto")
        if verdict == "roll_back":
            return await self.abort(rollout.version, by="auto", state="rolled_back")
        await self.pool.execute(
            "UPDATE model_rollouts SET evidence = $2 WHERE version = $1 AND state = 'canary'",
            rollout.version, json.dumps(evidence),
        )  # fmt: skip
        return rollout

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.rollout_check_s)
            try:
                await self.check()
            except Exception:  # loop boundary: a failed check must not stop the next ones
                logger.exception("rollout check failed")
