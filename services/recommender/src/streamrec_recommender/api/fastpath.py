"""A lean ASGI path for the hottest request, ``GET /v1/recommendations/{user_id}``.

Frontends call it on every page view, so the framework's per-request work (routing, dependency
resolution, eight middleware layers) is a large share of its cost. This wrapper answers the
valid form of that request itself, with the same body the FastAPI route would produce, and
counts the same HTTP metrics. The request is read by the route's own definition
(``api.request``: one query model, one parse); anything else (another route, a query that
fails validation, a CORS request) goes to the FastAPI app unchanged, which produces every
error answer.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Receive, Scope, Send

from streamrec_recommender.adapters.redis_state import count_degraded
from streamrec_recommender.api.request import (
    PREFIX,
    ROUTE,
    RecommendationQuery,
    read_query,
    user_of,
)
from streamrec_recommender.api.routes import dumps, render
from streamrec_recommender.runtime.recommender import Recommender
from streamrec_shared import metrics

logger = logging.getLogger(__name__)

_HEADERS = [(b"content-type", b"application/json")]
QUERY_CACHE = 4096
"""Distinct query strings whose reading is kept (frontends send a handful: ``k=10`` ...)."""


class FastPath:
    def __init__(self, app: ASGIApp, recommender: Recommender, *, cors: bool) -> None:
        self.app = app
        self.recommender = recommender
        self.cors = cors
        self._count = {
            200: metrics.HTTP_REQUESTS.labels("recommender", ROUTE, "GET", "200"),
        }
        self._duration = metrics.HTTP_REQUEST_DURATION.labels("recommender", ROUTE, "GET")
        self._queries: dict[bytes, RecommendationQuery | None] = {}

    def _query(self, raw: bytes) -> RecommendationQuery | None:
        """``read_query(raw)``, remembered per distinct query string (a reading is immutable)."""
        try:
            return self._queries[raw]
        except KeyError:
            if len(self._queries) >= QUERY_CACHE:
                self._queries.clear()
            found = self._queries[raw] = read_query(raw)
            return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or not scope["path"].startswith(PREFIX)
            or (self.cors and any(k == b"origin" for k, _ in scope["headers"]))
        ):
            await self.app(scope, receive, send)
            return
        user_id = user_of(scope["path"])
        query = self._query(scope.get("query_string", b""))
        if user_id is None or query is None:
            await self.app(scope, receive, send)
            return
        req = query.to_request(user_id)
        started = time.perf_counter()
        try:
            answer = await self.recommender.recommend(req)
        except Exception:  # request boundary: nothing sent yet, so the full app answers instead
            logger.exception("fast path failed for %s; handing over to the app", scope["path"])
            count_degraded("fast_path")
            await self.app(scope, receive, send)
            return
        body = dumps(render(answer, started))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*_HEADERS, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
        self._count[200].inc()
        self._duration.observe(time.perf_counter() - started)
