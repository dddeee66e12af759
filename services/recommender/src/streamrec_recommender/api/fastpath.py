"""A lean ASGI path for the hottest request, ``GET /v1/recommendations/{user_id}``.

Frontends call it on every page view, so the framework's per-request work (routing, dependency
resolution, eight middleware layers) is a large share of its cost. This wrapper answers the
*ordinary* form of that request itself, with the same body the FastAPI route would produce,
and counts the same HTTP metrics. Anything else (another route, a parameter it does not
recognise or that fails validation, a CORS request) goes to the FastAPI app unchanged, which
stays the one definition of the contract and produces every error answer.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import parse_qsl, unquote

from starlette.types import ASGIApp, Receive, Scope, Send

from streamrec_recommender.adapters.redis_state import count_degraded
from streamrec_recommender.api.routes import dumps, render
from streamrec_recommender.runtime.recommender import Recommender
from streamrec_recommender.serving.engine import Request
from streamrec_shared import metrics

logger = logging.getLogger(__name__)

PREFIX = "/v1/recommendations/"
ROUTE = "/v1/recommendations/{user_id}"
ALGORITHMS = frozenset({"auto", "als", "itemknn", "content", "popular", "hybrid"})
_HEADERS = [(b"content-type", b"application/json")]


def parse(path: str, query: bytes) -> Request | None:
    """The request if it is an ordinary, valid recommendations call; None to defer."""
    raw_user = path[len(PREFIX) :]
    if not raw_user or "/" in raw_user:
        return None
    user_id = unquote(raw_user)
    if not 1 <= len(user_id) <= 128:
        return None
    k, algorithm, category, exclude = 10, "auto", "", ""
    try:
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True, strict_parsing=False)
    except ValueError:
        return None
    for name, value in pairs:
        if name == "k":
            if not value.isdigit() or not 1 <= int(value) <= 100:
                return None
            k = int(value)
        elif name == "algorithm":
            if value not in ALGORITHMS:
                return None
            algorithm = value
        elif name == "category":
            if len(value) > 128:
                return None
            category = value
        elif name == "exclude":
            if len(value) > 8192:
                return None
            exclude = value
        else:
            return None
    excluded = tuple(p for p in (s.strip() for s in exclude.split(",")) if p)
    return Request(user_id, k, algorithm, category or None, excluded)


class FastPath:
    def __init__(self, app: ASGIApp, recommender: Recommender, *, cors: bool) -> None:
        self.app = app
        self.recommender = recommender
        self.cors = cors
        self._count = {
            200: metrics.HTTP_REQUESTS.labels("recommender", ROUTE, "GET", "200"),
        }
        self._duration = metrics.HTTP_REQUEST_DURATION.labels("recommender", ROUTE, "GET")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or not scope["path"].startswith(PREFIX)
            or (self.cors and any(k == b"origin" for k, _ in scope["headers"]))
        ):
            await self.app(scope, receive, send)
            return
        req = parse(scope["path"], scope.get("query_string", b""))
        if req is None:
            await self.app(scope, receive, send)
            return
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
