"""Settings of the stream processor: the shared groups plus ``processor`` tuning.

Environment: ``STREAMREC_PROCESSOR__CONSUMER__MAX_BATCH=500``, ``STREAMREC_HTTP__PORT=8003``, ...
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from streamrec_shared.consumer import ConsumerSettings
from streamrec_shared.settings import (
    AttributionTimes,
    FeedbackSettings,
    HttpSettings,
    ServiceSettings,
)


class ProcessorConsumer(ConsumerSettings):
    """The processor's one ``StreamConsumer`` (``streamrec_shared.consumer``) with the
    processor's defaults: ``STREAMREC_PROCESSOR__CONSUMER__FETCH_MIN_BYTES=4096`` and so on.

    ``group_id`` is the Kafka consumer group: workers with the same id split the partitions of
    ``events.v1``, ``catalog.v1`` and ``users.v1`` (never None here: a tail reader would have
    every worker apply every event).
    """

    group_id: str = Field(default="streamrec-stream-processor", min_length=1)
    # A batch is what the consumer has fetched when the previous one is done, up to max_batch
    # records: no lingering for more, so an event waits only for its fetch and the batch ahead.
    max_batch: int = Field(default=500, ge=1, le=10000)
    # Longest a fetch waits at the broker for data. The local broker (Tansu) answers a fetch
    # short of fetch_min_bytes only when this wait expires, so it bounds an event's wait for
    # its fetch, and each expired fetch costs the broker a read of the partitions. Measured
    # (tests/bench/bench_processor.py at 1,000 events/s, machine load 7-9 from other work):
    # 202 -> profile p50 43 / p99 159 ms at 25 ms, 63 / 192 ms at 50 ms (faust's loop at
    # 100 ms plus its 50 ms batch linger: 128-231 / 393-1060 ms under the same load); the
    # broker's idle CPU 0.06 cores at 25 ms, 0.025 at 100 ms. 50 ms is the middle.
    fetch_max_wait_ms: int = Field(default=50, ge=1, le=10000)
    # ... unless this many bytes are ready when the fetch arrives (the broker answers as soon
    # as they are). 32 KiB (chosen against faust's consumer: a 1-byte fetch returned a record
    # or two at once, again and again) was more than a second of a 1,000 events/s stream, so
    # nearly every fetch waited out fetch_max_wait_ms: freshness p50 35-47 / p99 103-153 ms.
    # 4 KiB, a request or a few, measured alternating with 32 KiB in one session
    # (tests/bench/bench_processor.py --freshness-only, machine load 1-3 from other work):
    # 1,000 events/s in requests of 20: 202 -> profile p50 19-22 / p99 34-63 ms against
    # 39-47 / 106-143 ms at 32 KiB, processor +0.04 cores, broker -0.03; 300 single-event
    # requests/s: p50 26-27 / p99 48-49 against 37 / 144-153 ms, processor +0.01, broker -0.02.
    # The price is at high single-event rates: 2,000 requests/s through the whole stack
    # (bench_ingest.py --scenarios whole): processor 0.24-0.25 cores against 0.19-0.20, ingest
    # p99 43-47 ms against 33-41 ms (same runs). 1 byte was as fresh (p50 15-22 / p99 31-55 ms)
    # but cost the processor +0.05 cores at 300 single requests/s. Every run:
    # tests/bench/results/processor_fetch_ab.json.
    fetch_min_bytes: int = Field(default=4 * 1024, ge=1)
    # Offsets are committed at most this often (always after the effects they cover, and at
    # every rebalance and stop): a crash replays at most this much, which is idempotent.
    commit_interval_s: float = Field(default=1.0, ge=0)


class ProcessorTuning(AttributionTimes):
    """How the processor consumes and what it keeps (with the ``AttributionTimes`` the
    recommender also has)."""

    consumer: ProcessorConsumer = ProcessorConsumer()
    # Trending forward decay (see streamrec_shared.profile).
    trending_half_life_hours: float = Field(default=24.0, gt=0)
    # Trending counts an event at its event time, but at most this long after its receive time
    # and its Kafka timestamp (ingest's bound on live events, as ingest's max_future_skew_s): a
    # far-future record that bypassed ingest cannot move trending's clock.
    max_future_skew_s: float = Field(default=300.0, ge=0)
    max_categories: int = Field(default=16, ge=1, le=1000)
    # Digests of the newest event ids kept per profile (same event id published twice).
    seen_ids: int = Field(default=16, ge=0, le=255)
    # Every applied event id of a user is also kept (sr:ids:<user>, by receive time) this long
    # after the user's newest: a client re-sending an event within this window of the first
    # copy's receive time is counted once however many events came in between. Longer than any
    # client's retry window. Costs per event id of the window (MEMORY USAGE, Redis 6.2): ~30
    # bytes while a user has at most 128 in it (listpack), ~100 bytes beyond (skiplist).
    event_id_window_hours: float = Field(default=48.0, gt=0)
    # At most this many of a user's event ids are kept (the newest): one user id sending without
    # pause (a bot, a broken client) costs at most ~100 KB, not 48 h of its events. A re-send
    # after more newer events of the same user than this, within the window, counts again.
    event_id_max: int = Field(default=1000, ge=16, le=1_000_000)
    redis_timeout_s: float = Field(default=5.0, gt=0)
    model_poll_interval_s: float = Field(default=5.0, gt=0)
    # Attribution of clicks and conversions (streamrec_stream_processor.attribution).
    attribution: bool = True


class ProcessorSettings(ServiceSettings):
    http: HttpSettings = HttpSettings(port=8003)
    processor: ProcessorTuning = ProcessorTuning()
    feedback: FeedbackSettings = FeedbackSettings()


@lru_cache(maxsize=1)
def get_settings() -> ProcessorSettings:
    """The process-wide settings, read from the environment once."""
    return ProcessorSettings()
