"""Prometheus metric definitions, one place for every service.

Names follow ``streamrec_<service>_<what>_<unit>``. Each service imports the metrics it
updates from here, so dashboards, alerts and tests can check names against one module.
All metrics live in the default registry; each service's ``GET /metrics`` serves
``exposition(service)``: the shared families (HTTP, event loop, dependencies, process) and its
own (``streamrec_<service>_*``), never another service's. Gauges that mean nothing until a
service has a value (a model version, an index recall) are ``SetGauge``s: no sample until set,
so an alert never reads a default 0 as a measurement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

# service -> prefix of the metric families only that service exports
SERVICE_PREFIXES = {
    "ingest": "streamrec_ingest_",
    "stream-processor": "streamrec_processor_",
    "trainer": "streamrec_trainer_",
    "recommender": "streamrec_recommender_",
}


class SetGauge(Gauge):
    """An unlabelled gauge that exports no sample until it is first set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._has_value = False
        super().__init__(*args, **kwargs)

    def set(self, value: float) -> None:
        super().set(value)
        self._has_value = True

    def _child_samples(self) -> Iterable[Any]:
        return super()._child_samples() if self._has_value else ()


class ServiceView(Collector):
    """The families of ``registry`` that ``service`` exports (see the module docstring); a
    service not in ``SERVICE_PREFIXES`` exports the shared families only."""

    def __init__(self, service: str, registry: CollectorRegistry = REGISTRY) -> None:
        self.service = service
        self.registry = registry
        self._others = tuple(p for s, p in SERVICE_PREFIXES.items() if s != service)

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            if not family.name.startswith(self._others):
                yield family


def exposition(service: str, registry: CollectorRegistry = REGISTRY) -> bytes:
    """The text ``GET /metrics`` of ``service`` answers with."""
    return generate_latest(ServiceView(service, registry))


LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FRESHNESS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)
TRAIN_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 240.0, 600.0, 1800.0)

# --- every HTTP service ---------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "streamrec_http_requests_total",
    "HTTP requests served, by service, route template, method and status code.",
    ["service", "route", "method", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "streamrec_http_request_duration_seconds",
    "HTTP request latency by service and route template.",
    ["service", "route", "method"],
    buckets=LATENCY_BUCKETS,
)
EVENT_LOOP_LAG = Histogram(
    "streamrec_event_loop_lag_seconds",
    "How late the event loop woke a timer (``watch_loop_lag``): stalls from CPU-bound work "
    "or blocking calls on the loop, which every request waiting on that loop shares.",
    ["service"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
DEPENDENCY_UP = Gauge(
    "streamrec_dependency_up",
    "1 when the service's last check of a dependency (kafka, redis, postgres, model) succeeded.",
    ["service", "dependency"],
)

# --- ingest ---------------------------------------------------------------------------------
INGEST_EVENTS_ACCEPTED = Counter(
    "streamrec_ingest_events_accepted_total",
    "Events acknowledged by the broker and answered 202, by event type.",
    ["event_type"],
)
INGEST_EVENTS_REJECTED = Counter(
    "streamrec_ingest_events_rejected_total",
    "Events refused, by reason (invalid, unavailable, unauthorized, rate_limited, too_large).",
    ["reason"],
)
INGEST_PUBLISH_DURATION = Histogram(
    "streamrec_ingest_publish_duration_seconds",
    "Time from handing a request's records to the producer until the broker acknowledged all.",
    ["topic"],
    buckets=LATENCY_BUCKETS,
)
INGEST_CATALOG_UPDATES = Counter(
    "streamrec_ingest_catalog_updates_total",
    "Catalog and user updates published, by kind (product, product_delete, user, order).",
    ["kind"],
)

# --- stream processor -----------------------------------------------------------------------
PROCESSOR_EVENTS = Counter(
    "streamrec_processor_events_total",
    "Events applied to profiles, by event type and outcome (applied, duplicate).",
    ["event_type", "outcome"],
)
PROCESSOR_DURATION = Histogram(
    "streamrec_processor_processing_duration_seconds",
    "Time to apply one event to Redis state.",
    buckets=LATENCY_BUCKETS,
)
PROCESSOR_FRESHNESS = Histogram(
    "streamrec_processor_freshness_seconds",
    "Wall time from ingest receive time to the event being visible in the user's profile.",
    buckets=FRESHNESS_BUCKETS,
)
PROCESSOR_CONSUMER_LAG = Gauge(
    "streamrec_processor_consumer_lag_messages",
    "Messages behind the log end, by topic and partition.",
    ["topic", "partition"],
)
PROCESSOR_DLQ = Counter(
    "streamrec_processor_dead_letters_total",
    "Messages sent to the dead-letter topic, by source topic and reason.",
    ["topic", "reason"],
)
PROCESSOR_CATALOG_UPDATES = Counter(
    "streamrec_processor_catalog_updates_total",
    "Catalog records applied to the Redis catalog state.",
    ["kind"],
)
PROCESSOR_MODEL_VERSION = SetGauge(
    "streamrec_processor_model_version",
    "Model version whose item factors the processor folds profile vectors into.",
)

# --- trainer --------------------------------------------------------------------------------
TRAINER_ARCHIVED = Counter(
    "streamrec_trainer_events_archived_total",
    "Events written to user_product_interactions (duplicates by event_id excluded).",
)
TRAINER_DUPLICATES = Counter(
    "streamrec_trainer_events_duplicate_total",
    "Events skipped by the archive because their event_id was already stored.",
)
TRAINER_ARCHIVE_DLQ = Counter(
    "streamrec_trainer_archive_dead_letters_total",
    "Events Postgres rejected (a data error: text or a number it cannot store), sent by the "
    "archive to the dead-letter topic instead of being archived, by source topic and reason.",
    ["topic", "reason"],
)
TRAINER_ARCHIVE_POSITION = Gauge(
    "streamrec_trainer_archive_position_timestamp_seconds",
    "Kafka timestamp of the newest record the archive has handled, by partition: with lag, "
    "time() minus this is how far behind the topic (and its retention) the archive is.",
    ["partition"],
)
TRAINER_CONSUMER_LAG = Gauge(
    "streamrec_trainer_consumer_lag_messages",
    "Archive consumer: messages behind the log end, by partition.",
    ["partition"],
)
TRAINER_STAGE_DURATION = Histogram(
    "streamrec_trainer_stage_duration_seconds",
    "Duration of each training stage (load, fit_<algo>, evaluate, publish).",
    ["stage"],
    buckets=TRAIN_BUCKETS,
)
TRAINER_RUNS = Counter(
    "streamrec_trainer_runs_total",
    "Training runs by final status (published, rejected, failed).",
    ["status"],
)
TRAINER_INTERACTIONS = SetGauge(
    "streamrec_trainer_interactions_used",
    "Interactions in the last training run's window.",
)
TRAINER_ACTIVE_VERSION = SetGauge(
    "streamrec_trainer_model_version_active",
    "Model version currently active in the registry.",
)
TRAINER_OFFLINE_METRIC = Gauge(
    "streamrec_trainer_offline_metric",
    "Offline metrics of the active version, by algorithm and metric (e.g. ndcg@20).",
    ["algorithm", "metric"],
)
TRAINER_LAST_PUBLISH = SetGauge(
    "streamrec_trainer_last_publish_timestamp_seconds",
    "Unix time of the last published model version.",
)
TRAINER_CANARY_VERSION = Gauge(
    "streamrec_trainer_canary_version",
    "Model version in canary rollout (0: none).",
)
TRAINER_CANARY_SHARE = Gauge(
    "streamrec_trainer_canary_share",
    "Share of users the canary version serves (0: no rollout).",
)
TRAINER_ROLLOUT_DECISIONS = Counter(
    "streamrec_trainer_rollout_decisions_total",
    "Ends of canary rollouts by outcome (promoted, rolled_back, aborted) and by whom.",
    ["outcome", "by"],
)

# --- recommender ----------------------------------------------------------------------------
RECOMMENDER_REQUESTS = Counter(
    "streamrec_recommender_recommendations_total",
    "Recommendation responses by algorithm and strategy.",
    ["algorithm", "strategy"],
)
RECOMMENDER_DEGRADED = Counter(
    "streamrec_recommender_degraded_total",
    "Responses served in a degraded mode, by the dependency that failed.",
    ["dependency"],
)
RECOMMENDER_CACHE = Counter(
    "streamrec_recommender_cache_requests_total",
    "Per-user result cache lookups by outcome (hit, miss).",
    ["outcome"],
)
RECOMMENDER_MODEL_VERSION = SetGauge(
    "streamrec_recommender_model_version",
    "Model version the recommender serves.",
)
RECOMMENDER_MODEL_AGE = SetGauge(
    "streamrec_recommender_model_age_seconds",
    "Seconds since the served model version was created.",
)
RECOMMENDER_ANN_RECALL = SetGauge(
    "streamrec_recommender_ann_recall_at_20",
    "Recall@20 of the approximate index against exact search, measured at build time.",
)
RECOMMENDER_SCORING_DURATION = Histogram(
    "streamrec_recommender_scoring_duration_seconds",
    "Time spent scoring and ranking one request, by algorithm.",
    ["algorithm"],
    buckets=LATENCY_BUCKETS,
)
RECOMMENDER_ONLINE_EVENTS = Counter(
    "streamrec_recommender_online_events_total",
    "Impressions served, by algorithm, variant and kind (impression).",
    ["algorithm", "variant", "kind"],
)
PROCESSOR_FEEDBACK_REJECTED = Counter(
    "streamrec_processor_feedback_rejected_total",
    "Events whose rec_id gave no credit: unverified (forged, altered or malformed: not signed"
    " by the recommender's key) or expired (older than the attribution window).",
    ["reason"],
)
PROCESSOR_ATTRIBUTED_EVENTS = Counter(
    "streamrec_processor_attributed_events_total",
    "Clicks and conversions the processor attributed to a recommendation, by algorithm, variant"
    " and kind (click, conversion).",
    ["algorithm", "variant", "kind"],
)


async def watch_loop_lag(service: str, interval_s: float = 0.05) -> None:
    """Observe ``EVENT_LOOP_LAG`` every ``interval_s`` until cancelled (uvloop timers have
    millisecond resolution, so lags under ~1 ms are noise)."""
    loop = asyncio.get_running_loop()
    lag = EVENT_LOOP_LAG.labels(service)
    while True:
        asked = loop.time() + interval_s
        await asyncio.sleep(interval_s)
        lag.observe(max(0.0, loop.time() - asked))
