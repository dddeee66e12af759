"""The recommender app: ``create_app()`` builds FastAPI and a lifespan that owns the runtime;
``create_server()`` (what uvicorn serves) puts the lean path for the hottest request in front.

The lifespan opens the Redis client (short timeouts, circuit breaker), builds the
``Recommender``, starts its background loops and the model watcher (models.v1 announcements,
registry polling as fallback), and tears everything down on exit. The service starts not ready:
``/readyz`` turns green once a model is loaded or the trending lists were read from Redis once
(even empty: an empty shop without a model is ready and says so in its answers).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
from fastapi import FastAPI
from redis.asyncio import Redis
from starlette.types import ASGIApp

from streamrec_recommender.adapters.breaker import CircuitBreaker
from streamrec_recommender.adapters.redis_state import RedisState, connect
from streamrec_recommender.api import routes, search
from streamrec_recommender.api.fastpath import FastPath
from streamrec_recommender.api.limits import ReadLimit, ReadLimitMiddleware
from streamrec_recommender.runtime.recommender import Recommender
from streamrec_recommender.serving.model import ServingModel
from streamrec_recommender.settings import RecommenderSettings, get_settings
from streamrec_shared import logs
from streamrec_shared.http import KeyRing, install_common
from streamrec_shared.resp import RespConnection

logger = logging.getLogger(__name__)


def create_app(
    settings: RecommenderSettings | None = None,
    *,
    redis: Redis | None = None,
    model: ServingModel | None = None,
    watch_models: bool = True,
    rng: np.random.Generator | None = None,
) -> FastAPI:
    """The app. ``redis`` replaces the redis-py clients built from settings (the request
    path's lean connection always follows ``settings.redis``) and ``model`` installs a
    prepared model directly (tests, benchmarks); ``watch_models=False`` skips the watcher."""
    from_env = settings is None
    settings = settings or get_settings()
    if from_env:
        logs.configure("recommender", settings.log.level, json_format=settings.log.json_format)
    s = settings.recommender
    client = redis if redis is not None else connect(settings.redis)
    background = redis if redis is not None else connect(settings.redis, timeout_s=2.0)
    requests = RespConnection(
        settings.redis.url.get_secret_value(),
        timeout_s=settings.redis.socket_timeout_s,
        connect_timeout_s=settings.redis.connect_timeout_s,
    )
    state = RedisState(
        client,
        CircuitBreaker("redis", failures=s.breaker_failures, open_s=s.breaker_open_s),
        requests=requests,
        background=background,
    )
    recommender = Recommender(settings, state, rng=rng)
    if model is not None:
        recommender.install_model(model)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await recommender.start(watch_models=watch_models)
        try:
            yield
        finally:
            await recommender.stop()
            requests.close()
            if redis is None:
                await client.aclose()
                await background.aclose()

    app = FastAPI(
        title="streamrec recommender",
        version="1",
        lifespan=lifespan,
        description="Top-k recommendations, similar products, trending; experiments and "
        "online metrics.",
    )
    app.state.settings = settings
    app.state.recommender = recommender
    app.state.keyring = KeyRing(settings.auth)
    app.state.read_limit = ReadLimit(app.state.keyring, s.read_rate_per_s, s.read_burst)

    async def readiness() -> dict[str, bool]:
        return {
            "model_or_trending_read": recommender.ready(),
            "model": recommender.model is not None,
            "redis": state.up,
        }

    async def ready_check() -> dict[str, bool]:
        checks = await readiness()
        # Only "something to serve" gates readiness; the others are reported for operators.
        return {"model_or_trending_read": checks["model_or_trending_read"]}

    install_common(app, service="recommender", http=settings.http, readiness=ready_check)
    app.include_router(routes.router)
    app.include_router(search.router)
    return app


def with_fast_path(app: FastAPI) -> ASGIApp:
    """``FastPath`` in front of an app from ``create_app``, the read limit
    (``api.limits``) in front of both.

    It answers the ordinary GET /v1/recommendations/{user_id} and hands everything else
    (lifespan included) to FastAPI. In front of, not inside, the app: FastAPI wraps even the
    outermost user middleware in its own error, telemetry and body-limit layers, about 50 us
    of CPU per request.
    """
    settings: RecommenderSettings = app.state.settings
    fast = FastPath(app, app.state.recommender, cors=bool(settings.http.cors_origins))
    return ReadLimitMiddleware(fast, app.state.read_limit)


def create_server() -> ASGIApp:
    """What uvicorn serves: the app from settings behind its fast path."""
    return with_fast_path(create_app())
