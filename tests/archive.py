"""What reached the archive (Postgres ``user_product_interactions``), for the stack tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from streamrec_client import AsyncStreamrecClient
from streamrec_dev import synthetic
from streamrec_shared.events import UserEvent

from .polling import eventually


def raw_view(tag: str, n: int, **fields: Any) -> UserEvent:
    """View ``n`` of user ``<tag>-user`` (products ``<tag>-p0..2``), as a producer that bypasses
    ingest would write it: ``fields`` may hold what ingest refuses."""
    now = datetime.now(UTC)
    return UserEvent(
        event_id=f"{tag}-{n}",
        user_id=f"{tag}-user",
        product_id=f"{tag}-p{n % 3}",
        event_type="view",
        timestamp=now,
        received_at=now,
        **fields,
    )


async def archived_ids(dsn: str, event_ids: Sequence[str]) -> dict[str, int]:
    """How many archive rows each of ``event_ids`` has (absent ids: not in the dict)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT event_id, count(*) AS n FROM user_product_interactions"
            " WHERE event_id = ANY($1::text[]) GROUP BY event_id",
            list(event_ids),
        )
    finally:
        await conn.close()
    return {r["event_id"]: r["n"] for r in rows}


async def wait_archived(
    dsn: str,
    event_ids: Sequence[str],
    *,
    what: str = "the archive",
    timeout: float = 90,
    interval: float = 0.2,
) -> dict[str, int]:
    """Wait until every one of ``event_ids`` is in the archive; returns ``archived_ids``."""
    wanted = len(set(event_ids))
    return await eventually(
        lambda: archived_ids(dsn, event_ids),
        lambda found: len(found) == wanted,
        timeout=timeout,
        what=what,
        interval=interval,
    )


async def send_archived(
    client: AsyncStreamrecClient, dsn: str, events: Sequence[dict[str, Any]]
) -> None:
    """Send ``events`` (with event ids) through ingest in batches; wait until all are archived."""
    for batch in synthetic.batches(list(events), 500):
        await client.send_events(batch)
    await wait_archived(dsn, [e["event_id"] for e in events])
