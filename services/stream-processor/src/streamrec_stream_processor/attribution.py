"""Attribution: clicks and conversions of ``events.v1`` counted against the rec ids they name.

Runs in the processor's ``events.v1`` handler, after the batch's profile updates and before
its offsets are committed (so it shares their fetch, their consumer group and their
at-least-once guarantee). An event with a rec id counts as a click, or a conversion if it is a
purchase; a purchase without one is looked up in ``sr:rs:<user>`` (which product the
recommender showed under which rec id). Counting is idempotent per event id (``SET NX`` on
``sr:ae:<event_id>``) and hits / conversions are distinct per response (``sr:ah:<rec_id>``,
``sr:ac:<rec_id>:<product>``), so a replayed batch counts nothing twice. Layout and rec-id
format: ``streamrec_shared.feedback``; the recommender counts the impressions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from redis.asyncio import Redis

from streamrec_shared import feedback, metrics
from streamrec_shared.events import UserEvent

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
        algorithm_codes: Mapping[str, str] = feedback.ALGORITHM_CODES,
    ) -> None:
        self.redis = redis
        self.window_s = window_s
        self.retention_s = retention_s
        self.algorithm_codes = dict(algorithm_codes)
        self._script = redis.register_script(_COUNT_LUA)

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
            tag = feedback.parse_rec_id(rec_id, self.algorithm_codes)
            if tag is None or e.received_at.timestamp() - tag.served_at > self.window_s:
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
        for (j, kind, tag), counted in zip(calls, await pipe.execute(), strict=True):
            if counted:
                out[j] = kind
                metrics.PROCESSOR_ATTRIBUTED_EVENTS.labels(
                    tag.algorithm, tag.variant or "-", kind
                ).inc()
        return out
