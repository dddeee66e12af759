"""HTTP routes of the recommender (read API v1 plus admin: experiments, campaigns, metrics).

Dependency failures inside ``Recommender`` degrade the answer, and domain errors
(``streamrec_shared.errors``) map to status codes in the shared handlers; the only try/except
here translate a store's unavailability into the shared ``RetryableError`` (503).
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

import numpy as np
import orjson
from fastapi import APIRouter, Path, Query
from fastapi import Request as HttpRequest
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from streamrec_recommender import online
from streamrec_recommender.adapters.campaigns import to_json as campaign_json
from streamrec_recommender.adapters.definitions import PostgresUnavailableError
from streamrec_recommender.adapters.experiments import to_json
from streamrec_recommender.adapters.redis_state import RedisUnavailableError, count_degraded
from streamrec_recommender.api import schemas
from streamrec_recommender.api.deps import RecommenderDep
from streamrec_recommender.api.limits import ReadLimit
from streamrec_recommender.api.request import ROUTE, AlgorithmName, RecommendationQuery
from streamrec_recommender.api.schemas import ok
from streamrec_recommender.runtime.recommender import Answer, Recommender
from streamrec_recommender.serving import newitems
from streamrec_recommender.serving.algorithms import hybrid
from streamrec_recommender.serving.context import Request
from streamrec_recommender.serving.policy import Experiment, Variant, validate_experiment
from streamrec_recommender.serving.ranking import Campaign, ItemFilter, Ranked
from streamrec_shared.errors import InvalidInput, NotFound, RetryableError
from streamrec_shared.http import AdminKey, require_scope
from streamrec_shared.settings import ApiKey

router = APIRouter()
ProfileKey = Annotated[ApiKey | None, require_scope("profiles:read")]

K = Annotated[int, Query(ge=1, le=100, description="number of items, 1..100")]
UserId = Annotated[str, Path(min_length=1, max_length=128)]


def _json(body: Any, status: int = 200) -> Response:
    return Response(dumps(body), status_code=status, media_type="application/json")


def dumps(body: Any) -> bytes:
    """A response body as compact JSON (orjson: about a tenth of ``json.dumps``' CPU)."""
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def render(answer: Answer, started: float) -> dict[str, Any]:
    r = answer.result
    body: dict[str, Any] = {
        "user_id": answer.user_id,
        "rec_id": answer.rec_id,
        "algorithm": r.algorithm,
        "strategy": r.strategy,
        "model_version": r.model_version,
        "items": [{"product_id": p, "score": round(s, 6)} for p, s in r.items],
        "segment": r.segment,
        "cached": answer.cached,
    }
    if r.experiment is not None:
        body["experiment"] = {"name": r.experiment, "variant": r.variant}
    body["latency_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
    return body


@router.get(ROUTE, tags=["recommendations"], responses=ok(schemas.Recommendation, 422, 429))
async def recommendations(
    rec: RecommenderDep, user_id: UserId, query: Annotated[RecommendationQuery, Query()]
) -> Response:
    """Top-k products for a user; ``strategy`` says how they were found. The fast path
    (``api.fastpath``) answers the same request from the same definition."""
    started = time.perf_counter()
    answer = await rec.recommend(query.to_request(user_id))
    return _json(render(answer, started))


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_ids: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        min_length=1, max_length=1000
    )
    k: int = Field(default=10, ge=1, le=100)
    algorithm: AlgorithmName = "auto"
    category: str | None = None


@router.post(
    "/v1/recommendations/batch",
    tags=["recommendations"],
    responses=ok(schemas.BatchRecommendations, 400, 422, 429),
)
async def recommendations_batch(
    rec: RecommenderDep, body: BatchIn, request: HttpRequest
) -> Response:
    """Recommendations for up to 1000 users (each as ``GET /v1/recommendations``); counts as
    one read per user id against the client's read limit (429 with Retry-After)."""
    started = time.perf_counter()
    limit: ReadLimit | None = getattr(request.app.state, "read_limit", None)
    if limit is not None and len(body.user_ids) > 1:  # the request itself was charged one
        limit.charge(request.scope, len(body.user_ids) - 1)
    results: list[dict[str, Any]] = []

    async def one(user_id: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        answer = await rec.recommend(Request(user_id, body.k, body.algorithm, body.category))
        return render(answer, t0)

    for start in range(0, len(body.user_ids), 64):  # concurrently: they share scoring batches
        chunk = body.user_ids[start : start + 64]
        results += await asyncio.gather(*(one(u) for u in chunk))
    return _json(
        {"results": results, "latency_ms": round((time.perf_counter() - started) * 1000.0, 3)}
    )


@router.get(
    "/v1/products/{product_id}/similar",
    tags=["recommendations"],
    responses=ok(schemas.Similar, 404, 422, 429, 503),
)
async def similar(
    rec: RecommenderDep,
    product_id: Annotated[str, Path(min_length=1, max_length=128)],
    k: K = 10,
) -> Response:
    """Products similar to one product: item-kNN neighbours, else nearest in the model space."""
    started = time.perf_counter()
    model, catalog = rec.model, rec.catalog
    if model is None:
        raise RetryableError("no model loaded yet", retry_after=5.0)
    i = model.index_of.get(product_id)
    if i is None:
        raise NotFound(f"product_id: {product_id} is not known to model {model.version}")
    blocked = catalog.blocked if catalog is not None and catalog.fits(model) else None
    flt = ItemFilter.build(blocked=blocked, exclude=[i])
    strategy = "itemknn"
    found = Ranked.empty()
    if model.neighbours is not None and model.neighbour_sims is not None and i < model.n_trained:
        nb = model.neighbours[i].astype(np.int64)
        ok = nb >= 0
        found = flt.apply(Ranked.of(nb[ok], model.neighbour_sims[i][ok])).head(k)
    elif product_id in model.live_items:  # added since the model: nearest by content
        found = flt.apply(newitems.content_neighbours(model, i, max(k * 4, 50))).head(k)
        strategy = "content"
    if len(found) < k:
        q = model.item_factors[i]
        norm = float(np.linalg.norm(q)) or 1.0
        vec = rec.engine.search(model, catalog, q / norm, max(k * 4, 50), flt, None)
        strategy = "itemknn+factors" if len(found) else "factors"
        seen = set(found.indices.tolist())
        extra = [
            (j, s)
            for j, s in zip(vec.indices.tolist(), vec.scores.tolist(), strict=True)
            if j not in seen
        ]
        floor = float(found.scores[-1]) if len(found) else 0.0
        items = [
            (int(j), float(s))
            for j, s in zip(found.indices.tolist(), found.scores.tolist(), strict=True)
        ]
        scale = max((abs(s) for _, s in extra), default=1.0) or 1.0
        items += [(j, floor - 1e-3 - (1.0 - s / scale) * 1e-3) for j, s in extra[: k - len(items)]]
    else:
        items = [
            (int(j), float(s))
            for j, s in zip(found.indices.tolist(), found.scores.tolist(), strict=True)
        ]
    live = newitems.similar_live(model, i, k, blocked)
    if live:  # products added since the model, by content: they have no neighbours yet
        have = {j for j, _ in live}
        kept = [(j, sc) for j, sc in items if j not in have][: max(k - len(live), 0)]
        floor = min((sc for _, sc in kept), default=0.0)
        items = kept + [(j, floor - 1e-3 * (n + 1)) for n, (j, _) in enumerate(live)]
        strategy = f"{strategy}+content:{newitems.NEW_PRODUCT}"
    elif product_id in model.live_items:
        strategy = f"{strategy}:{newitems.NEW_PRODUCT}"
    body = {
        "product_id": product_id,
        "strategy": strategy,
        "model_version": model.version,
        "items": [{"product_id": str(model.item_ids[j]), "score": round(s, 6)} for j, s in items],
        "latency_ms": round((time.perf_counter() - started) * 1000.0, 3),
    }
    return _json(body)


@router.get("/v1/trending", tags=["recommendations"], responses=ok(schemas.Trending, 422, 429))
async def trending(
    rec: RecommenderDep,
    k: K = 10,
    category: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    """Trending products (live decayed counters), else the model's popularity."""
    started = time.perf_counter()
    category = category or None
    mirror = rec.state.trending
    rows = mirror.by_category.get(category, ()) if category else mirror.global_
    skip = rec.state.catalog.unavailable
    items = [(p, s) for p, s in rows if p not in skip][:k]
    fresh = rec.state.trending_fresh
    strategy = "trending" if fresh else "degraded:trending_cached"
    model = rec.model
    if not items and model is not None:
        ranked = (
            model.popular_by_category.get(category, Ranked.empty()) if category else model.popular
        )
        catalog = rec.catalog
        if catalog is not None and catalog.fits(model):
            ranked = ItemFilter.build(blocked=catalog.blocked).apply(ranked)
        items = [
            (str(model.item_ids[i]), float(s))
            for i, s in zip(ranked.indices[:k].tolist(), ranked.scores[:k].tolist(), strict=True)
        ]
        strategy = "model_popularity" if fresh else "degraded:model_popularity"
    body = {
        "category": category,
        "strategy": strategy,
        "items": [{"product_id": p, "score": round(s, 6)} for p, s in items],
        "latency_ms": round((time.perf_counter() - started) * 1000.0, 3),
    }
    return _json(body)


@router.get(
    "/v1/users/{user_id}/profile",
    tags=["users"],
    responses=ok(schemas.Profile, 401, 403, 422, 429, 503),
)
async def user_profile(rec: RecommenderDep, user_id: UserId, _key: ProfileKey) -> Response:
    """What serving knows about a user (live profile in Redis, trained factor): personal data,
    so it needs a key with the ``profiles:read`` scope (or admin)."""
    try:
        read = await rec.state.read_user(user_id, None)
    except RedisUnavailableError as exc:
        count_degraded("redis")
        raise RetryableError("user profiles are unavailable (Redis)", retry_after=2.0) from exc
    p = read.profile
    model = rec.model
    body = {
        "user_id": user_id,
        "event_count": p.event_count if p else 0,
        "segment": p.segment if p else "new",
        "purchase_history": list(p.purchase_history) if p else [],
        "view_history": list(p.view_history) if p else [],
        "recent_items": [
            {"product_id": pid, "weight": round(float(w), 4)}
            for pid, w in zip(p.items[:50], p.weights[:50].tolist(), strict=False)
        ]
        if p
        else [],
        "category_affinity": p.category_affinity if p else {},
        "counts": p.counts if p else {},
        "attributes": read.attributes or {},
        "first_event_ts": p.first_event_ts if p else None,
        "last_event_ts": p.last_event_ts if p else None,
        "vector_model_version": p.model_version if p else None,
        "in_model": model is not None and user_id in model.user_index,
    }
    return _json(body)


# --- experiments -----------------------------------------------------------------------------
class VariantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    algorithm: str
    weight: float = Field(ge=0)


class ExperimentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    variants: list[VariantIn] = Field(min_length=2, max_length=10)
    status: Literal["draft", "running", "stopped"] = "draft"
    description: str = Field(default="", max_length=2000)


@router.get(
    "/v1/experiments/{name}",
    tags=["experiments"],
    responses=ok(schemas.ExperimentOut, 401, 403, 404, 422, 429),
)
async def get_experiment(rec: RecommenderDep, name: str, _key: AdminKey) -> Response:
    exp = await rec.experiments.get(name)
    if exp is None:
        raise NotFound(f"name: no experiment named {name!r}")
    return _json(to_json(exp))


@router.put(
    "/v1/experiments/{name}",
    tags=["experiments"],
    responses=ok(schemas.ExperimentOut, 400, 401, 403, 422, 429, 503),
)
async def put_experiment(
    rec: RecommenderDep, name: str, body: ExperimentIn, _key: AdminKey
) -> Response:
    """Create or replace an experiment; the first variant is the control."""
    exp = Experiment(
        name=name,
        status=body.status,
        description=body.description,
        variants=tuple(Variant(v.name, v.algorithm, v.weight) for v in body.variants),
    )
    problems = validate_experiment(exp)
    if problems:
        raise InvalidInput("invalid experiment: " + "; ".join(problems), details=problems)
    try:
        saved = await rec.experiments.put(exp)
    except PostgresUnavailableError as exc:
        raise RetryableError("experiments cannot be saved: Postgres unavailable") from exc
    rec.refresh_config()
    return _json(to_json(saved))


# --- campaigns -------------------------------------------------------------------------------
class CampaignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    boost: float = Field(ge=-1.0, le=10.0)
    start: float = Field(ge=0, description="unix seconds")
    end: float = Field(ge=0, description="unix seconds")
    product_ids: list[str] = Field(default_factory=list, max_length=10_000)
    categories: list[str] = Field(default_factory=list, max_length=100)
    segment: Literal["new", "light", "heavy"] | None = None
    enabled: bool = True


@router.get("/v1/campaigns", tags=["campaigns"], responses=ok(schemas.CampaignList, 401, 403, 429))
async def list_campaigns(rec: RecommenderDep, _key: AdminKey) -> Response:
    return _json({"campaigns": [campaign_json(c) for c in rec.campaigns.all.values()]})


@router.put(
    "/v1/campaigns/{name}",
    tags=["campaigns"],
    responses=ok(schemas.CampaignOut, 400, 401, 403, 422, 429, 503),
)
async def put_campaign(
    rec: RecommenderDep, name: str, body: CampaignIn, _key: AdminKey
) -> Response:
    """Boost products or categories for a time window (optionally for one segment)."""
    if body.end <= body.start:
        raise InvalidInput("end: must be after start", details={"field": "end"})
    if not body.product_ids and not body.categories:
        raise InvalidInput("product_ids: give product_ids or categories")
    campaign = Campaign(
        name=name,
        boost=body.boost,
        start=body.start,
        end=body.end,
        product_ids=tuple(body.product_ids),
        categories=tuple(body.categories),
        segment=body.segment,
        enabled=body.enabled,
    )
    try:
        await rec.campaigns.put(campaign)
    except PostgresUnavailableError as exc:
        raise RetryableError("campaigns cannot be saved: Postgres unavailable") from exc
    rec.refresh_config()
    return _json(campaign_json(campaign))


@router.delete(
    "/v1/campaigns/{name}",
    tags=["campaigns"],
    responses=ok(schemas.Deleted, 401, 403, 404, 422, 429, 503),
)
async def delete_campaign(rec: RecommenderDep, name: str, _key: AdminKey) -> Response:
    try:
        found = await rec.campaigns.delete(name)
    except PostgresUnavailableError as exc:
        raise RetryableError("campaigns cannot be changed: Postgres unavailable") from exc
    if not found:
        raise NotFound(f"name: no campaign named {name!r}")
    rec.refresh_config()
    return _json({"deleted": name})


# --- online metrics --------------------------------------------------------------------------
@router.get(
    "/v1/metrics/online",
    tags=["metrics"],
    responses=ok(schemas.OnlineMetrics, 401, 403, 422, 429, 503),
)
async def online_metrics(
    rec: RecommenderDep,
    _key: AdminKey,
    window: Annotated[int, Query(ge=60, le=30 * 86_400)] = 3600,
) -> Response:
    """Impressions, clicks, CTR, hit and conversion rate per algorithm, segment and variant."""
    await rec.recorder.flush()
    try:
        counts = await rec.state.bg(lambda: rec.recorder.window_counts(window))
    except RedisUnavailableError as exc:
        raise RetryableError("online metrics are unavailable (Redis)") from exc
    experiments = {e.name: e for e in rec.experiments.all.values()}
    body = online.aggregate(counts, experiments)
    body["window_s"] = window
    body["bandit"] = _bandit_view(rec)
    return _json(body)


def _bandit_view(rec: Recommender) -> dict[str, Any]:
    """Per segment: every arm's prior (from the active model's offline evaluation), its online
    counts, posterior and probability of being the best arm; the member weights ``hybrid``
    fuses with (the model's, chosen by the trainer, else the registry's)."""
    rng = np.random.default_rng(0)
    engine, model = rec.engine, rec.model
    segments = sorted(set(rec.arm_stats) | set(engine.evidence(model).by_segment) | {"*"})
    out: dict[str, Any] = {}
    p_best: dict[str, Any] = {}
    for segment in segments:
        stats = rec.arm_stats.get(segment, {})
        priors = engine.priors(model, segment, stats)
        out[segment] = engine.bandit.view(stats, rng, priors=priors)
        p_best[segment] = {arm: v["p_best"] for arm, v in out[segment]["arms"].items()}
    members, trend = hybrid.weights(model)
    return {
        "arms": list(engine.bandit.arms),
        "model_version": model.version if model is not None else None,
        "prior_strength": engine.settings.prior_strength,
        "hybrid_weights": {**dict(members), hybrid.TREND: trend},
        "hybrid_weights_source": "model" if model and model.hybrid_weights else "registry",
        "p_best_by_segment": p_best,
        "by_segment": out,
    }
