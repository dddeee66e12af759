"""Kafka topic names and their layout. Names carry the schema version."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from streamrec_shared.events import ModelAnnouncement, ProductRecord, UserEvent, UserRecord

EVENTS = "events.v1"
CATALOG = "catalog.v1"
USERS = "users.v1"
MODELS = "models.v1"
DEAD_LETTER = "events.dlq.v1"

RECORDS: Mapping[str, type[UserEvent | ProductRecord | UserRecord | ModelAnnouncement]] = (
    MappingProxyType(
        {EVENTS: UserEvent, CATALOG: ProductRecord, USERS: UserRecord, MODELS: ModelAnnouncement}
    )
)
"""The record class of each topic's values (``events.decode(raw, RECORDS[topic])``); users.v1
also carries ``UserErased`` (``DELETE /v1/users/{id}``): read it with
``events.decode_user_update``. The dead-letter topic holds the raw value of whatever failed,
with the reason in its headers."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    compacted: bool = False
    config: dict[str, str] = field(default_factory=dict)


def topic_specs(event_partitions: int) -> list[TopicSpec]:
    """Every topic streamrec needs, with the partition count for events.v1 from settings."""
    return [
        TopicSpec(EVENTS, event_partitions),
        TopicSpec(CATALOG, max(1, event_partitions // 2), compacted=True),
        TopicSpec(USERS, max(1, event_partitions // 2), compacted=True),
        TopicSpec(MODELS, 1),
        TopicSpec(DEAD_LETTER, 1),
    ]
