"""Kafka topic names and their layout. Names carry the schema version."""

from __future__ import annotations

from dataclasses import dataclass, field

EVENTS = "events.v1"
CATALOG = "catalog.v1"
USERS = "users.v1"
MODELS = "models.v1"
DEAD_LETTER = "events.dlq.v1"


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
