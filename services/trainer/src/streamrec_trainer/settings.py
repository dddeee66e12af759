"""Trainer settings: the archive consumer, training triggers, gate, registry."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from pydantic import Field, SecretStr

from streamrec_shared.consumer import ConsumerSettings
from streamrec_shared.settings import Group, HttpSettings, ServiceSettings


class ArchiveSettings(ConsumerSettings):
    """The archive's ``StreamConsumer`` (``streamrec_shared.consumer``)."""

    group_id: str = "streamrec-trainer-archive"
    max_batch: int = Field(default=5000, ge=1)
    poll_timeout_ms: int = Field(default=200, ge=1)
    # Once a batch has its first records, keep fetching this long (or to max_batch) before
    # writing: a trickle of events then costs one transaction and one offset commit per linger,
    # not one per fetch of a record or two.
    linger_ms: int = Field(default=100, ge=0, le=5000)
    # Each fetch waits for this many bytes (or fetch_max_wait_ms): the archive needs no
    # per-record latency, and fetches are most of a broker's work under a trickle of produces.
    fetch_min_bytes: int = Field(default=1024 * 1024, ge=1)
    fetch_max_wait_ms: int = Field(default=1000, ge=1, le=10_000)
    # Every batch is committed once its transaction is (as before the shared consumer).
    commit_interval_s: float = Field(default=0.0, ge=0)
    lag_interval_s: float = Field(default=5.0, gt=0, description="consumer-lag metric refresh")


class TrainingSettings(Group):
    """When to retrain and on what window; hyper-parameters of every algorithm."""

    interval_s: float = Field(default=0.0, ge=0, description="0 turns the schedule off")
    after_events: int = Field(default=0, ge=0, description="retrain after N new events; 0 = off")
    window_days: float = Field(default=365.0, gt=0)
    holdout_fraction: float = Field(default=0.1, gt=0, lt=0.5)
    eval_max_users: int = Field(
        default=10_000, ge=0, description="evaluate a seeded sample of this many users; 0 = all"
    )
    min_interactions: int = Field(default=20, ge=1)
    # the gate: publish only if main_metric >= active's * (1 - tolerance)
    main_metric: str = "ndcg@20"
    # negative: the candidate must beat the active version by that fraction
    gate_tolerance: float = Field(default=0.05, ge=-1, le=1)
    # fewer evaluated holdout users than this: "insufficient evidence", decided by data growth
    gate_min_users: int = Field(default=20, ge=1)
    # a candidate below the floor is rejected only when the paired per-user test says it is
    # worse than the champion (z of the mean NDCG difference <= -gate_z; 1.645: one-sided 5%)
    gate_z: float = Field(default=1.645, ge=0)
    # insufficient evidence also publishes when this many products with interactions are
    # unknown to the active version (it cannot serve them; 0 = off)
    gate_new_items: int = Field(default=1, ge=0)
    gate_data_growth: float = Field(
        default=0.10,
        ge=0,
        description="insufficient evidence publishes when the training data grew by this "
        "fraction (interactions) over the active version's",
    )
    served_algorithm: str = "als"
    # gradual rollout (rollout.py): a published version serves this share of users first
    # (0 = activate at once); decided every rollout_check_s once both sides have
    # rollout_min_impressions, rolled back when the canary's hit rate is worse (z <= -rollout_z)
    canary_share: float = Field(default=0.1, ge=0, lt=1)
    rollout_check_s: float = Field(default=30.0, gt=0)
    rollout_min_impressions: int = Field(default=1000, ge=1)
    rollout_z: float = Field(default=1.645, gt=0)
    # repeat consumption -> the seen-items rule published with the model (repeats.seen_rule)
    seen_exclude_below: float = Field(default=0.05, ge=0, le=1)
    seen_keep_above: float = Field(default=0.3, gt=0, le=1)
    seen_min_events: int = Field(default=20, ge=1)
    topn_recent_users: int = Field(default=10000, ge=0)
    topn_k: int = Field(default=50, ge=1)
    # ALS
    factors: int = Field(default=64, ge=1)
    regularization: float = Field(default=0.1, ge=0)
    alpha: float = Field(default=0.2, gt=0)
    iterations: int = Field(default=15, ge=1)
    refit_iterations: int = Field(
        default=5,
        ge=0,
        description="ALS iterations of the final fit, warm-started from the evaluated model; "
        "0 = a cold fit with `iterations`",
    )
    random_state: int = 42
    # implicit's OpenMP threads for ALS and kNN (BLAS stays single-threaded: OPENBLAS_NUM_THREADS=1)
    threads: int = Field(default=2, ge=0)
    half_life_days: float = Field(default=90.0, gt=0)
    # the training half-life of these algorithms is chosen per retrain on the holdout from
    # half_life_grid (days, null = no decay), replacing half_life_days for their fit only when
    # the best beats it by a paired z >= half_life_z (streamrec_trainer.decay); an empty list
    # or grid turns the choice off
    half_life_algorithms: list[str] = Field(default_factory=lambda: ["itemknn"])
    # a week to a year, the default 90 d among them
    half_life_grid: list[Annotated[float, Field(gt=0)] | None] = Field(
        default_factory=lambda: [7.0, 14.0, 30.0, 60.0, 90.0, 180.0, 365.0, None]
    )
    half_life_z: float = Field(default=1.645, ge=0)


class ExportSettings(Group):
    """``streamrec export|import|convert``: the HMAC-SHA256 key that signs pickle exports.

    Without a key (``STREAMREC_EXPORTS__HMAC_KEY``, at least 32 characters) pickle is neither
    written nor read; JSON works regardless.
    """

    hmac_key: SecretStr | None = None
    import_batch: int = Field(default=5000, ge=1)


class TrainerSettings(ServiceSettings):
    http: HttpSettings = HttpSettings(port=8002)
    archive: ArchiveSettings = ArchiveSettings()
    training: TrainingSettings = TrainingSettings()
    exports: ExportSettings = ExportSettings()


@lru_cache
def get_settings() -> TrainerSettings:
    return TrainerSettings()
