"""LagTracker.report against a consumer whose assignment changes under it (pure logic)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from aiokafka.errors import IllegalStateError
from faust.types import TP

from streamrec_shared import metrics
from streamrec_stream_processor.agents import LagTracker


class _Consumer:
    """Lists two partitions; the first was revoked by a rebalance before ``position``."""

    def __init__(self) -> None:
        self.revoked = TP("users.v1", 0)
        self.kept = TP("events.v1", 3)

    def assignment(self) -> set[TP]:
        return {self.revoked, self.kept}

    def highwater(self, tp: TP) -> int:
        return 50

    async def position(self, tp: TP) -> int:
        if tp == self.revoked:
            raise IllegalStateError(f"Partition {tp} is not assigned")
        return 20


async def test_a_partition_revoked_mid_sweep_is_skipped_not_fatal() -> None:
    """A timer that raises crashes the faust app: the sweep must survive a rebalance that
    revokes a partition between ``assignment()`` and ``position()``."""
    tracker = LagTracker(cast(Any, SimpleNamespace(consumer=_Consumer())))
    await tracker.report()
    gauge = metrics.PROCESSOR_CONSUMER_LAG.labels("events.v1", "3")
    assert gauge._value.get() == 30
    assert tracker._reported == {("events.v1", 3)}
