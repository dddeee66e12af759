"""Ingest settings: shared groups plus the ``ingest`` group (``STREAMREC_INGEST__*``)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from streamrec_shared.settings import Group, HttpSettings, ServiceSettings


class IngestOptions(Group):
    """How the gateway publishes and how long it waits for the broker."""

    publish_timeout_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="bound on waiting for the broker's ack; past it the request gets 503",
    )
    retry_after_s: float = Field(default=1.0, ge=0, description="Retry-After sent with a 503")
    # How long the producer gathers the records of single-event requests into one batch per
    # partition (requests of more than a few events send their own batches at once). The broker
    # stores and every consumer group reads each batch as one unit, so fewer, larger batches
    # cost the broker less; 10 ms trades a few ms of p50 for that (tests/bench/bench_ingest.py).
    linger_ms: int = Field(default=10, ge=0, le=100, description="producer batching delay")
    producer_retry_s: float = Field(
        default=1.0, gt=0, description="pause between attempts to start the producer"
    )
    check_timeout_s: float = Field(default=1.0, gt=0, description="/readyz dependency checks")
    store_catalog: bool = Field(
        default=True,
        description="after the broker ack, upsert products/categories/users into Postgres",
    )
    order_reconcile_interval_s: float = Field(
        default=60.0,
        ge=0,
        description="republish order lines missing from the archive; 0 turns it off",
    )
    order_reconcile_grace_s: float = Field(
        default=120.0, ge=0, description="only orders older than this are reconciled"
    )
    order_reconcile_window_s: float = Field(
        default=86400.0, gt=0, description="only orders younger than this are reconciled"
    )
    order_reconcile_limit: int = Field(default=1000, ge=1)
    max_future_skew_s: float = Field(
        default=300.0,
        ge=0,
        description="event time may be at most this far after receive time (both endpoints)",
    )
    max_live_age_days: float | None = Field(
        default=None,
        gt=0,
        description="POST /v1/events: event time at most this many days before receive time "
        "(None: no bound, the default, since shops replay history through the live route); "
        "with a bound, older history goes through POST /v1/events/history or `streamrec load`",
    )
    catalog_refresh_s: float = Field(
        default=30.0,
        gt=0,
        description="how often each worker reloads the ids of catalog products written by the "
        "other workers (for unknown_product_ids in the 202 of POST /v1/events)",
    )


class IngestSettings(ServiceSettings):
    """Everything the ingest gateway reads from the environment (prefix ``STREAMREC_``)."""

    http: HttpSettings = HttpSettings(port=8000)
    ingest: IngestOptions = IngestOptions()


@lru_cache
def get_settings() -> IngestSettings:
    return IngestSettings()
