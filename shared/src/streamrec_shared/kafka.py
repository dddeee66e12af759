"""Kafka clients (aiokafka) built from settings, and topic creation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from streamrec_shared.settings import KafkaSettings
from streamrec_shared.topics import TopicSpec

logger = logging.getLogger(__name__)


def connection(settings: KafkaSettings) -> dict[str, Any]:
    """The arguments every client (producer, consumer, admin) connects with: bootstrap
    servers, client id and, when configured, TLS (``ssl_context``) and SASL credentials."""
    args: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        cafile = str(settings.ssl_cafile) if settings.ssl_cafile is not None else None
        args["ssl_context"] = create_ssl_context(cafile=cafile)
    if settings.security_protocol.startswith("SASL"):
        assert settings.sasl_password is not None  # KafkaSettings requires it
        args["sasl_mechanism"] = settings.sasl_mechanism
        args["sasl_plain_username"] = settings.sasl_username
        args["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return args


def producer(settings: KafkaSettings, *, linger_ms: int = 2) -> AIOKafkaProducer:
    """acks=all producer; idempotent when the broker supports it (setting)."""
    return AIOKafkaProducer(
        **connection(settings),
        acks="all" if settings.acks == "all" else int(settings.acks),
        enable_idempotence=settings.enable_idempotence,
        request_timeout_ms=settings.request_timeout_ms,
        linger_ms=linger_ms,
        max_batch_size=1024 * 1024,
    )


def consumer(
    settings: KafkaSettings,
    *topics: str,
    group_id: str | None,
    auto_offset_reset: str = "earliest",
    max_poll_records: int = 1000,
    fetch_max_wait_ms: int = 500,
    fetch_min_bytes: int = 1,
) -> AIOKafkaConsumer:
    """Consumer with auto-commit off: callers commit after their effects are durable.

    Background consumers that need not see each record at once ask for ``fetch_min_bytes``
    per fetch, waiting up to ``fetch_max_wait_ms``: under a trickle of small produces this
    turns one fetch per produce into one per wait, which is most of a broker's work.
    """
    return AIOKafkaConsumer(
        *topics,
        **connection(settings),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset=auto_offset_reset,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        rebalance_timeout_ms=settings.rebalance_timeout_ms,
        max_poll_records=max_poll_records,
        fetch_max_wait_ms=fetch_max_wait_ms,
        fetch_min_bytes=fetch_min_bytes,
        isolation_level="read_uncommitted",
    )


async def ensure_topics(
    settings: KafkaSettings, specs: Iterable[TopicSpec], *, attempts: int = 30
) -> None:
    """Create the topics that are missing; retries while the broker is starting."""
    specs = list(specs)
    for attempt in range(attempts):
        admin = AIOKafkaAdminClient(**connection(settings))
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [s for s in specs if s.name not in existing]
            if missing:
                new = [
                    NewTopic(
                        name=s.name,
                        num_partitions=s.partitions,
                        replication_factor=settings.replication_factor,
                        topic_configs={
                            **({"cleanup.policy": "compact"} if s.compacted else {}),
                            **s.config,
                        },
                    )
                    for s in missing
                ]
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(new)
                logger.info("created topics %s", [s.name for s in missing])
            return
        except (KafkaError, OSError) as exc:
            if attempt == attempts - 1:
                raise
            logger.info("broker not ready for topic creation (%s); retrying", exc)
            await asyncio.sleep(min(0.2 * (attempt + 1), 2.0))
        finally:
            await admin.close()
