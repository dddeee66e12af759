"""A lean ASGI path for the hottest write, ``POST /v1/events``.

Shops' clients send single events at high rates, and for a single event the framework's work
(routing, the middleware and exception layers FastAPI wraps around every app) is a large share
of the gateway's CPU (tests/bench/bench_ingest.py measures it). This wrapper answers that request
itself with the route's own steps (``routes.events.events_request``), the same
answers (``JSONResponse``, ``domain_response`` for every refusal) and the same HTTP metrics.
A request it cannot judge from its headers alone (no or oversized ``Content-Length``, a CORS
request) goes to the FastAPI app, as does every other route: the body limit, CORS and the error
handlers keep one definition there.
"""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI
from prometheus_client import Counter
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from streamrec_ingest.deps import IngestState
from streamrec_ingest.routes.events import events_request
from streamrec_shared import metrics
from streamrec_shared.errors import StreamrecError
from streamrec_shared.http import KeyRing, domain_response, internal_error_response

logger = logging.getLogger(__name__)

ROUTE = "/v1/events"


class EventsFastPath:
    """``POST /v1/events`` in front of the FastAPI app built by ``create_app``."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.state: IngestState = app.state.ingest
        self.keyring: KeyRing = app.state.keyring
        http = self.state.settings.http
        self.limit = http.max_body_bytes
        self.cors = bool(http.cors_origins)
        self._duration = metrics.HTTP_REQUEST_DURATION.labels("ingest", ROUTE, "POST")
        self._count: dict[int, Counter] = {}  # per status: labels() is a lookup under a lock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != ROUTE:
            await self.app(scope, receive, send)
            return
        declared: bytes | None = None
        presented: str | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"x-api-key" and presented is None:
                presented = value.decode("latin-1")
            elif name == b"origin" and self.cors:
                declared = None  # CORS headers come from the app's middleware
                break
        if declared is None or not declared.isdigit() or int(declared) > self.limit:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nothing to answer
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        response: Response
        try:
            client = scope["client"][0] if scope.get("client") else None
            raw = b"".join(chunks)
            body = await events_request(self.keyring, presented, raw, self.state, client)
            response = JSONResponse(body, status_code=202)
        except StreamrecError as exc:
            response = domain_response(exc)
        except Exception:  # request boundary, as the app's handler of unexpected errors
            logger.exception("unhandled error on POST %s", ROUTE)
            response = internal_error_response()
        await response(scope, receive, send)
        status = response.status_code
        count = self._count.get(status)
        if count is None:
            count = self._count[status] = metrics.HTTP_REQUESTS.labels(
                "ingest", ROUTE, "POST", str(status)
            )
        count.inc()
        self._duration.observe(time.perf_counter() - started)


def with_fast_path(app: FastAPI) -> ASGIApp:
    """``EventsFastPath`` in front of an app from ``create_app`` (lifespan and every other
    route go to the app)."""
    return EventsFastPath(app)
