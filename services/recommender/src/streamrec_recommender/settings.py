"""Recommender settings: the shared groups plus a ``recommender`` group of serving knobs.

Environment: ``STREAMREC_RECOMMENDER__EXACT_MAX_ITEMS=200000``,
``STREAMREC_HTTP__WORKERS=2`` and so on (prefix ``STREAMREC_``, nested with ``__``).
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, field_validator

from streamrec_recommender.runtime.index import AnnParams
from streamrec_shared.algorithms import REGISTRY
from streamrec_shared.settings import (
    AttributionTimes,
    FeedbackSettings,
    HttpSettings,
    ServiceSettings,
)


class ServingSettings(AttributionTimes):
    """Knobs of scoring, filtering, policy, attribution (``attribution_window_s`` and
    ``online_retention_s`` from ``AttributionTimes``) and degradation."""

    # --- scoring ---
    exact_max_items: int = Field(default=200_000, ge=1)
    """Catalogues up to this many items are scored exactly; larger ones use the ANN index."""
    ann: AnnParams = AnnParams()
    """The ANN index's knobs (``STREAMREC_RECOMMENDER__ANN__CONNECTIVITY=16`` and so on)."""
    content_scan_min_items: int = Field(default=50_000, ge=1)
    """From this many content vectors on, ``content`` scores a query against an int8 copy of
    them first and re-scores only the rows that can reach the top in float32 (exact results,
    ``serving.quantised``); below it a float32 scan of the (cache-resident) vectors is as
    cheap. Measured crossover on the reference machine: 50k vectors of 64 factors."""
    index_cache_dir: str = "/tmp/streamrec-recommender-index"  # noqa: S108 - a cache, not secrets
    candidates_min: int = Field(default=100, ge=10)
    """Candidates taken before filters, boosts and blending: ``max(candidates_min, 4 k)``."""
    max_batch: int = Field(default=32, ge=1)
    """Requests whose user vectors are scored together in one matrix product."""
    batch_window_ms: float = Field(default=0.0, ge=0, le=20)
    """Wait this long for more requests before scoring a batch (0: only requests that became
    ready in the same event-loop turn). Trades latency for fewer passes over the factors; with
    the pruned exact scorer a pass costs about the same per user at any batch size, so by
    default nothing waits."""

    # --- tiers and filters ---
    few_events: int = Field(default=5, ge=0)
    """Users with fewer events than this (but some) get the recent-items tier."""
    exclude_viewed: bool = False
    """Also never recommend items the user has viewed (purchases are always excluded)."""
    trending_blend: float = Field(default=0.3, ge=0, le=1)
    """Weight of trending in the recent-items tier."""

    # --- policy ---
    bandit_window_s: int = Field(default=3600, ge=60)
    bandit_refresh_s: float = Field(default=5.0, gt=0)
    bandit_arms: list[str] = Field(default_factory=lambda: list(REGISTRY.arms))
    """Default: every served algorithm marked as an arm in ``streamrec_shared.algorithms``."""

    @field_validator("bandit_arms")
    @classmethod
    def _served_arms(cls, arms: list[str]) -> list[str]:
        """Only algorithms the recommender serves (registered before the settings are made, as
        the default assumes): a misspelt arm would never be drawn, silently."""
        unknown = [arm for arm in arms if arm not in REGISTRY.served]
        if unknown:
            raise ValueError(
                f"{', '.join(map(repr, unknown))} not served (served: {', '.join(REGISTRY.served)})"
            )
        if not arms:
            raise ValueError("at least one arm")
        return arms

    bandit_prior_strength: float = Field(default=5000.0, ge=0)
    """Pseudo-impressions of each arm's prior from the model's offline evaluation when the
    model carries no paired standard errors (older bundles; with them the evidence sets each
    arm's strength, ``serving.policy.offline_priors``); also how strongly the online hit-rate
    scale is shrunk towards the offline figure. 0 = flat Beta(1, 1) priors."""
    experiments_refresh_s: float = Field(default=5.0, gt=0)
    campaigns_refresh_s: float = Field(default=2.0, gt=0)

    # --- results cache and attribution ---
    cache_ttl_s: int = Field(default=300, ge=1)
    live_products: bool = True
    """Read ``catalog.v1`` and place products the served model does not know in its space with
    the model's content map (``serving.newitems``), before any retrain."""
    online_flush_s: float = Field(default=0.5, gt=0)

    # --- abuse ---
    read_rate_per_s: float = Field(default=50.0, ge=0)
    """Reads (every GET under /v1/, the batch POST) per second per client address without a
    configured API key (a key's reads go to its own rate and burst); 0 = no limit. Per
    worker process; a batch costs one read per user id. Behind a proxy, run uvicorn with
    ``--forwarded-allow-ips`` so that the client address is the caller's."""
    read_burst: float = Field(default=100.0, ge=1)

    # --- degradation ---
    breaker_failures: int = Field(default=3, ge=1)
    breaker_open_s: float = Field(default=2.0, gt=0)
    catalog_refresh_s: float = Field(default=0.25, gt=0)
    """Poll of the unavailable-products version (a change is re-read at once)."""
    categories_refresh_s: float = Field(default=300.0, gt=0)
    """Full re-scan of product categories in ``sr:catalog`` (categories rarely change)."""
    trending_refresh_s: float = Field(default=2.0, gt=0)
    """Full re-read of the trending lists (the safety net of ``trending_poll_s``)."""
    trending_poll_s: float = Field(default=0.2, gt=0)
    """Poll of the trending lists' versions (``sr:trend:ver``, one HGETALL); a list that
    changed is re-read at once, so lists show an event within this poll (plus the processor's
    freshness) of its 202. Under a steady stream every active category's list changes each
    poll: shorter polls cost the workers that much more parsing."""
    model_poll_interval_s: float = Field(default=5.0, gt=0)


class RecommenderHttpSettings(HttpSettings):
    """HTTP defaults of the recommender (a subclass, so env overrides keep the other defaults)."""

    port: int = 8001
    workers: int = 2
    pin_workers: bool = True
    """With several workers, pin each to its own CPU (``main.ReusePortWorker``)."""


class RecommenderSettings(ServiceSettings):
    http: RecommenderHttpSettings = RecommenderHttpSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    recommender: ServingSettings = Field(default_factory=ServingSettings)
    """Built per settings object (not once at import), so defaults derived from the algorithm
    registry (``bandit_arms``) include algorithms registered before the settings are made."""


@lru_cache(maxsize=1)
def get_settings() -> RecommenderSettings:
    return RecommenderSettings()
