"""One decoder for every topic's records: ``events.decode`` picks the class by ``kind``."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import BaseModel, ValidationError

from streamrec_shared import topics
from streamrec_shared.events import (
    EventIn,
    ModelAnnouncement,
    ProductBatchItem,
    ProductRecord,
    UserEvent,
    UserRecord,
    decode,
    encode,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
EVENT = EventIn(
    user_id="u1", event_type="rating", product_id="p1", value=4.0, rec_id="r"
).to_record(T0)
PRODUCT = ProductBatchItem(product_id="p1", name="n", category="c", price=2.5).to_record("p1", T0)
USER = UserRecord(user_id="u1", attributes={"tier": "gold"}, updated_at=T0)
MODEL = ModelAnnouncement(version=3, artifact_uri="s3://b/v3", activated_at=T0)


@pytest.mark.parametrize("record", [EVENT, PRODUCT, USER, MODEL], ids=lambda r: r.kind)
def test_any_record_round_trips_by_its_kind(record: BaseModel) -> None:
    raw = encode(record)
    assert decode(raw) == record
    assert decode(raw, type(record)) == record  # type: ignore[type-var]


def test_each_topic_names_its_record_class_and_refuses_other_kinds() -> None:
    assert topics.RECORDS[topics.EVENTS] is UserEvent
    assert topics.RECORDS[topics.CATALOG] is ProductRecord
    with pytest.raises(ValidationError, match="kind"):
        decode(encode(PRODUCT), UserEvent)
    with pytest.raises(ValidationError):
        decode(b'{"kind":"order"}')
    with pytest.raises(ValidationError):
        decode(b"\x00not json")


def test_to_record_fills_what_ingest_resolves() -> None:
    assert EVENT.received_at == EVENT.timestamp == T0
    assert len(EVENT.event_id) == 32
    assert (EVENT.value, EVENT.rec_id, EVENT.kind, EVENT.schema_version) == (4.0, "r", "event", 1)
    assert UserEvent.model_validate(EVENT.model_dump()) == EVENT  # a valid record
    assert (
        ProductRecord(product_id="p1", name="n", category="c", price=2.5, updated_at=T0) == PRODUCT
    )
