"""The archive against a real Postgres (started for this module): records Postgres cannot store
are isolated and reported, never stall the rest; transient errors are not mistaken for them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from streamrec_shared.consumer import Record
from streamrec_shared.events import UserEvent, encode
from streamrec_shared.settings import KafkaSettings
from streamrec_trainer.archive import (
    DATA_ERRORS,
    Archiver,
    archive_events,
    archive_isolating,
    rejection_reason,
)
from streamrec_trainer.settings import ArchiveSettings

pytestmark = pytest.mark.slow

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def _event(n: int, **fields: Any) -> UserEvent:
    """A decoded event as an older ingest or another producer could have written it: the
    consumer-side model does not re-check what the archive can store."""
    ts = T0 + timedelta(seconds=n)
    base: dict[str, Any] = {
        "event_id": f"a{n}",
        "user_id": f"u{n % 7}",
        "product_id": f"p{n % 5}",
        "event_type": "view",
        "timestamp": ts,
        "received_at": ts,
    }
    return UserEvent(**{**base, **fields})


async def _stored(pool: asyncpg.Pool) -> set[str]:
    return {
        r["event_id"] for r in await pool.fetch("SELECT event_id FROM user_product_interactions")
    }


BAD = {
    7: {"session_id": "s\x00nul"},  # text: NUL
    30: {"context": {"k": "v\x00"}},  # jsonb: \u0000
    31: {"price": 1e13},  # numeric(14, 4) overflows
    63: {"rec_id": "r\ud800"},  # an unpaired surrogate: not UTF-8
}


async def test_bad_records_are_isolated_and_the_rest_archived(pool: asyncpg.Pool) -> None:
    events = [_event(n, **BAD.get(n, {})) for n in range(64)]
    with pytest.raises(DATA_ERRORS):  # the whole-batch write fails on them
        await archive_events(pool, events)
    assert await _stored(pool) == set()

    inserted, rejected = await archive_isolating(pool, events)
    assert inserted == len(events) - len(BAD)
    assert sorted(i for i, _ in rejected) == sorted(BAD)
    assert await _stored(pool) == {f"a{n}" for n in range(64) if n not in BAD}
    reasons = {i: rejection_reason(exc) for i, exc in rejected}
    assert reasons[7] == "character_not_in_repertoire", reasons
    assert reasons[30] == "untranslatable_character", reasons
    assert reasons[31] == "numeric_value_out_of_range", reasons
    assert reasons[63] == "unencodable", reasons

    # a replay of the same batch: nothing new, the same records rejected
    inserted, rejected = await archive_isolating(pool, events)
    assert inserted == 0
    assert sorted(i for i, _ in rejected) == sorted(BAD)


async def test_all_good_batch_is_one_write(pool: asyncpg.Pool) -> None:
    events = [_event(n) for n in range(100, 120)]
    inserted, rejected = await archive_isolating(pool, events)
    assert (inserted, rejected) == (20, [])


async def test_archiver_dead_letters_with_reason_and_source(pool: asyncpg.Pool) -> None:
    sent: list[tuple[Record, str, str]] = []

    async def dead_letter(rec: Record, reason: str, error: str) -> None:
        sent.append((rec, reason, error))

    archiver = Archiver(KafkaSettings(), ArchiveSettings(), pool, dead_letter=dead_letter)
    good = [_event(200), _event(202)]
    bad = _event(201, session_id="x\x00")
    records = [
        Record("events.v1", 2, 10 + i, e.user_id.encode(), encode(e), 1_700_000_000_000 + i)
        for i, e in enumerate([good[0], bad, good[1]])
    ]
    await archiver.archive(records)
    assert {"a200", "a202"} <= await _stored(pool)
    assert "a201" not in await _stored(pool)
    assert [(r.offset, reason) for r, reason, _ in sent] == [(11, "character_not_in_repertoire")]
    assert "0x00" in sent[0][2]


@pytest.mark.parametrize(
    "transient",
    [
        asyncpg.PostgresConnectionError,  # connection lost
        asyncpg.TooManyConnectionsError,
        asyncpg.SerializationError,
        asyncpg.DeadlockDetectedError,
        asyncpg.AdminShutdownError,
        asyncpg.CannotConnectNowError,
        asyncpg.InterfaceError,  # the pool closing
    ],
)
def test_transient_errors_are_not_data_errors(transient: type[Exception]) -> None:
    """These retry the batch (the consumer's ``retryable``), never dead-letter a record."""
    assert not issubclass(transient, DATA_ERRORS)
