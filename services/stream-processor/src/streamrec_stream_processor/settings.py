"""Settings of the stream processor: the shared groups plus ``processor`` tuning.

Environment: ``STREAMREC_PROCESSOR__BATCH_MAX=500``, ``STREAMREC_HTTP__PORT=8003``, ...
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import BaseModel, Field

from streamrec_shared.settings import HttpSettings, ServiceSettings


class ProcessorTuning(BaseModel):
    """How the processor consumes and what it keeps.

    ``app_id`` is also the Kafka consumer group: workers with the same id split the partitions.
    """

    app_id: str = "streamrec-stream-processor"
    # One batch = up to batch_max events, or what arrived within batch_within_s of the first.
    batch_max: int = Field(default=500, ge=1, le=10000)
    batch_within_s: float = Field(default=0.05, gt=0, le=5.0)
    # faust's repaired Cython fast paths (opt-in in faust-streaming 0.15 and new there); measured
    # +4% events per CPU second on this workload, so left off by default.
    cython_optimizations: bool = False
    # Longest a fetch waits at the broker for data (faust's fixed default is 1500 ms). The local
    # broker (Tansu) answers a fetch that is short of fetch_min_bytes by reading its partitions
    # again after the wait, at a cost that grows with the log it holds: 100 ms halves those
    # reads against 50 ms and keeps a profile fresh within the 200 ms p50 target.
    fetch_max_wait_ms: int = Field(default=100, ge=1, le=10000)
    # ... unless this many bytes are ready first. With 1 (faust's default), a trickle of small
    # produce requests is fetched a record or two at a time; measured on the local broker at
    # 1,200 single-event requests/s: processor 0.27 -> 0.19 cores, broker 0.47 -> 0.36.
    fetch_min_bytes: int = Field(default=32 * 1024, ge=1)
    # Trending forward decay (see streamrec_shared.profile).
    trending_half_life_hours: float = Field(default=24.0, gt=0)
    max_categories: int = Field(default=16, ge=1, le=1000)
    # Digests of the newest event ids kept per profile (same event id published twice).
    seen_ids: int = Field(default=16, ge=0, le=255)
    # faust's data directory (no tables are used; faust still wants one). Unset: the
    # FAUST_DATADIR environment variable, else a fresh temporary directory.
    data_dir: str | None = None
    redis_timeout_s: float = Field(default=5.0, gt=0)
    lag_interval_s: float = Field(default=5.0, gt=0)
    model_poll_interval_s: float = Field(default=5.0, gt=0)
    commit_interval_s: float = Field(default=1.0, gt=0)


class ProcessorSettings(ServiceSettings):
    http: HttpSettings = HttpSettings(port=8003)
    processor: ProcessorTuning = ProcessorTuning()


@lru_cache(maxsize=1)
def get_settings() -> ProcessorSettings:
    """The process-wide settings, read from the environment once."""
    return ProcessorSettings()
