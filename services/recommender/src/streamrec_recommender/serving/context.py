"""What one recommendation reads and produces: the request, its inputs, its plan, its result.

``Request`` is what the client asked (``api.request`` parses it); ``Context`` everything fetched
before scoring starts (model reference, catalogue index, live profile, trending mirror, policy
inputs); ``Job`` the request on its way through the engine, each step's result computed once
by ``Engine.prepare`` (user vector, recent items, plan, item filter) and, for exact ALS, the
candidates the batcher scored for many jobs together; ``Result`` the answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from streamrec_recommender.serving.catalog import CatalogIndex
from streamrec_recommender.serving.model import ServingModel
from streamrec_recommender.serving.policy import ArmStats, Experiment, Variant
from streamrec_recommender.serving.ranking import Campaign, ItemFilter, Ranked
from streamrec_shared import profile as profiles
from streamrec_shared.recent_events import RecentEvent

Recent = tuple[NDArray[np.int64], NDArray[np.float32]]
"""A profile's recent items in serving space (r,) int64 and their weights (r,) float32."""


@dataclass(frozen=True)
class Request:
    user_id: str
    k: int = 10
    algorithm: str = "auto"
    category: str | None = None
    exclude: tuple[str, ...] = ()
    context: tuple[str, ...] = ()
    """Products on the shopper's screen or in the cart (``context=``), most recent first: the
    session's latest items, ahead of every recorded event."""
    include_seen: bool | None = None
    """Show items the user already had (True), never (False), or as the model's rule says."""


@dataclass(frozen=True)
class TrendingMirror:
    """Last trending lists read from Redis: global and per category, (id, score) best first."""

    global_: tuple[tuple[str, float], ...] = ()
    by_category: dict[str, tuple[tuple[str, float], ...]] = field(default_factory=dict)
    loaded: bool = False


@dataclass(frozen=True)
class Context:
    """Everything a recommendation may use, fetched before it starts."""

    model: ServingModel | None
    catalog: CatalogIndex | None
    unavailable: frozenset[str]
    trending: TrendingMirror
    profile: profiles.UserProfile | None
    attributes: Mapping[str, Any] | None
    experiments: Sequence[Experiment] = ()
    arm_stats: Mapping[str, Mapping[str, ArmStats]] = field(default_factory=dict)
    campaigns: Sequence[Campaign] = ()
    degraded: tuple[str, ...] = ()
    """Dependencies that failed for this request (e.g. ("redis",))."""
    now: float = 0.0
    recent_events: tuple[RecentEvent, ...] = ()
    """The user's last accepted events, most recent first (``streamrec_shared.recent_events``:
    ingest writes them before its 202, so they may be newer than ``profile``)."""


@dataclass(frozen=True)
class Plan:
    """What a request runs, decided before any scoring: the algorithm wanted, the tier
    (``cold_start``, ``recent_items`` or None), the experiment assignment, and whether a
    campaign applies to the user's segment."""

    wanted: str
    tier: str | None
    choice: tuple[Experiment, Variant] | None
    segment: str
    boosted: bool


@dataclass(slots=True, eq=False)
class Job:
    """One request inside the engine (``Engine.prepare``): every input a scorer reads.

    u (f,) float32 or None: the user vector, from ``vec_source`` (``profile_vector``,
    ``fold_in``, ``model_vector``); recent: the profile's recent items; flt: what the request
    may show (None only without a model); category: the request's category filter; depth: how
    many exact ALS candidates the plan reads (``Engine.als_depth``); als: those candidates, set
    by the batcher when it scored this job with others (else the ALS scorer searches itself).
    """

    req: Request
    ctx: Context
    model: ServingModel | None
    u: NDArray[np.float32] | None
    vec_source: str | None
    recent: Recent
    plan: Plan
    flt: ItemFilter | None
    category: str | None
    depth: int
    als: Ranked | None = None
    session: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    """The session's latest items in serving space (s,) int64, most recent first: the
    request's context, then read-your-writes events, then the profile's recent views."""


@dataclass(frozen=True)
class Result:
    algorithm: str
    strategy: str
    items: list[tuple[str, float]]
    segment: str
    experiment: str | None = None
    variant: str | None = None
    model_version: int | None = None
