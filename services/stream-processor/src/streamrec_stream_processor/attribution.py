"""Attribution: clicks and conversions of ``events.v1`` counted against the rec ids they name.

Runs in the processor's ``events.v1`` handler, after the batch's profile updates and before
its offsets are committed (so it shares their fetch, their consumer group and their
at-least-once guarantee). An event with a rec id counts as a click, or a conversion if it is a
purchase; a purchase without one is looked up in ``sr:rs:<user>`` (which product the
recommender showed under which rec id). Counting is idempotent per event id (``SET NX`` on
``sr:ae:<event_id>``) and hits / conversions are distinct per response (``sr:ah:<rec_id>``,
``sr:ac:<rec_id>:<product>``), so a replayed batch counts nothing twice. Layout:
``streamrec_shared.feedback``; the recommender counts the impressions.

Only rec ids signed with the recommender's key count (``streamrec_shared.rec_ids``): an event
with a forged, altered or expired rec id still updates the profile (that happens before) but
gives no credit to any algorithm, variant or model, and is counted on
``streamrec_processor_feedback_rejected_total``. The variant label of the Prometheus counter
is one of the known variants (the experiments the recommender caches in Redis, the rollout's
canary / control), else ``other``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from streamrec_shared import feedback, metrics
from streamrec_shared.events import UserEvent
from streamrec_shared.rec_ids import RecIds

logger = logging.getLogger(__name__)

_COUNT_LUA = """
if not redis.call('SET', KEYS[1], 1, 'NX', 'EX', ARGV[3]) then return 0 end
if ARGV[1] ~= '' then redis.call('HINCRBY', KEYS[3], ARGV[1], 1) end
if redis.call('SET', KEYS[2], 1, 'NX', 'EX', ARGV[3]) then
  redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
end
redis.call('EXPIRE', KEYS[3], ARGV[4])
return 1
"""
"""Atomically: skip a seen event id; count a click; count the first hit / conversion."""


def countable(event: UserEvent) -> bool:
    return event.rec_id is not None or event.event_type == "purchase"


class Attributor:
    """Turns feedback events into click / hit / conversion counters (idempotent)."""

    def __init__(
        self,
        redis: Redis,
        *,
        window_s: int,
        retention_s: int,
        rec_ids: RecIds,
        known_refresh_s: float = 30.0,
    ) -> None:
        self.redis = redis
        self.window_s = window_s
        self.retention_s = retention_s
        self.rec_ids = rec_ids
        self._script = redis.register_script(_COUNT_LUA)
        self.known_variants: frozenset[str] = frozenset(feedback.ROLLOUT_VARIANTS)
        self._known_refresh_s = known_refresh_s
        self._known_at = -known_refresh_s

    async def _refresh_known(self) -> None:
        """The variant names of the experiments cached in Redis (at most every
        ``known_refresh_s``), plus the rollout's."""
        now = time.monotonic()
        if now - self._known_at < self._known_refresh_s:
            return
        self._known_at = now
        known = set(feedback.ROLLOUT_VARIANTS)
        try:
            cached = await self.redis.hgetall(feedback.EXPERIMENTS_CACHE)
        except (RedisError, OSError) as exc:  # keep the known set; try again next time
            logger.warning("could not read the experiments for metric labels: %s", exc)
            return
        for doc in cached.values():
            try:
                known.update(str(v["name"]) for v in json.loads(doc)["variants"])
            except (ValueError, KeyError, TypeError):
                continue
        self.known_variants = frozenset(known)

    async def apply(self, events: Sequence[UserEvent]) -> list[str | None]:
        """Count ``events`` (any; the uncountable are skipped): the kind counted for each
        (``click``, ``conversion``) or None. Two Redis round trips per batch at most: the rec
        ids of purchases without one, then every count in one pipeline."""
        lookups = [j for j, e in enumerate(events) if e.rec_id is None and countable(e)]
        shown: dict[int, str] = {}
        if lookups:
            pipe = self.redis.pipeline(transaction=False)
            for j in lookups:
                pipe.hget(feedback.shown_key(events[j].user_id), events[j].product_id)
            for j, found in zip(lookups, await pipe.execute(), strict=True):
                if found is not None:
                    shown[j] = found.decode() if isinstance(found, bytes) else str(found)
        out: list[str | None] = [None] * len(events)
        calls: list[tuple[int, str, feedback.RecTag]] = []
        pipe = self.redis.pipeline(transaction=False)
        for j, e in enumerate(events):
            rec_id = e.rec_id if e.rec_id is not None else shown.get(j)
            if rec_id is None:
                continue
            tag = self.rec_ids.parse(rec_id)
            if tag is None or e.received_at.timestamp() - tag.served_at > self.window_s:
                if e.rec_id is not None:
                    reason = "unverified" if tag is None else "expired"
                    metrics.PROCESSOR_FEEDBACK_REJECTED.labels(reason).inc()
                continue
            labels = (tag.algorithm, tag.segment, tag.experiment, tag.variant)
            if e.event_type == "purchase":
                kind, dedupe = "conversion", feedback.conversion_key(rec_id, e.product_id)
                clk, first = "", feedback.field("conv", *labels)
            else:
                kind, dedupe = "click", feedback.hit_key(rec_id)
                clk, first = feedback.field("clk", *labels), feedback.field("hit", *labels)
            await self._script(
                keys=[feedback.event_key(e.event_id), dedupe, feedback.bucket_key(tag.minute)],
                args=[clk, first, self.window_s, self.retention_s],
                client=pipe,
            )
            calls.append((j, kind, tag))
        if not calls:
            return out
        await self._refresh_known()
        for (j, kind, tag), counted in zip(calls, await pipe.execute(), strict=True):
            if counted:
                out[j] = kind
                metrics.PROCESSOR_ATTRIBUTED_EVENTS.labels(
                    tag.algorithm, feedback.label(tag.variant, self.known_variants), kind
                ).inc()
        return out
