"""FastAPI pieces every HTTP service uses: error format, probes, metrics, auth, limits.

Errors are always ``{"error": {"code", "message", "details"}}``; validation errors list each
invalid item by location (``events[3].timestamp``) with the reason. Routes raise domain errors
from ``streamrec_shared.errors`` and the handlers installed here answer them; a route catches
one only to count it or add details, and re-raises it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from streamrec_shared import logs, metrics
from streamrec_shared.errors import (
    Forbidden,
    RateLimited,
    RetryableError,
    StreamrecError,
    Unauthorized,
)
from streamrec_shared.settings import ApiKey, AuthSettings, HttpSettings, LogSettings
from streamrec_shared.settings import Scope as KeyScope

logger = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[dict[str, bool]]]


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def _loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def describe_validation(errors: Sequence[Any], *, strip: int = 0) -> list[dict[str, Any]]:
    """Turn pydantic error dicts into ``[{"loc", "index", "field", "reason"}]`` entries.

    ``strip`` drops leading location parts (e.g. FastAPI's ``body``). ``index`` is the batch
    index when the location goes through a list, ``field`` the last named part.
    """
    out: list[dict[str, Any]] = []
    for err in errors:
        loc = list(err.get("loc", ()))[strip:]
        # tagged unions and function validators add noise parts; keep the user-facing ones
        loc = [
            p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function")))
        ]
        index = next((p for p in loc if isinstance(p, int)), None)
        names = [p for p in loc if isinstance(p, str)]
        reason = str(err.get("msg", "invalid"))
        if reason.startswith("Value error, "):
            reason = reason[len("Value error, ") :]
        field_name = names[-1] if names else None
        model_level = not loc or not isinstance(loc[-1], str)
        if model_level and ":" in reason and " " not in reason.split(":", 1)[0]:
            # model-level rules name their field as "field: reason"
            field_name, reason = (s.strip() for s in reason.split(":", 1))
            loc = [*loc, field_name]
        out.append(
            {
                "loc": _loc(loc) or "body",
                "index": index,
                "field": field_name,
                "reason": reason,
                "type": err.get("type"),
            }
        )
    return out


def _summary(details: list[dict[str, Any]]) -> str:
    parts = [f"{d['loc']}: {d['reason']}" for d in details[:5]]
    more = f" (+{len(details) - 5} more)" if len(details) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more


def domain_response(exc: StreamrecError) -> JSONResponse:
    """The answer to a domain error: its status, the error body, ``Retry-After`` when the
    client should retry (unavailable dependency, rate limit)."""
    headers: dict[str, str] = {}
    if isinstance(exc, RetryableError | RateLimited):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return JSONResponse(error_body(exc.code, exc.message, exc.details), exc.status, headers=headers)


def internal_error_response() -> JSONResponse:
    """The answer to an unexpected error: a 500 with no detail (the log has the trace)."""
    return JSONResponse(error_body("internal", "internal error"), 500)


def install_error_handlers(app: FastAPI) -> None:
    """Map domain errors and validation errors to the JSON error format; never a stack trace."""

    async def on_domain(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StreamrecError)
        return domain_response(exc)

    async def on_request_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        details = describe_validation(exc.errors(), strip=0)
        for d in details:  # "body.events[2].user_id" -> "events[2].user_id"
            for prefix in ("body.", "query.", "path.", "header."):
                if d["loc"].startswith(prefix):
                    d["loc"] = d["loc"][len(prefix) :]
        return JSONResponse(error_body("invalid_request", _summary(details), details), 422)

    async def on_pydantic(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ValidationError)
        details = describe_validation(exc.errors())
        return JSONResponse(error_body("invalid_request", _summary(details), details), 422)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        return JSONResponse(
            error_body(codes.get(exc.status_code, "http_error"), str(exc.detail)),
            exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return internal_error_response()

    app.add_exception_handler(StreamrecError, on_domain)
    app.add_exception_handler(RequestValidationError, on_request_validation)
    app.add_exception_handler(ValidationError, on_pydantic)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


class BodyLimitMiddleware:
    """Answer 413 when a request body exceeds ``limit`` bytes (declared or streamed).

    A declared ``Content-Length`` over the limit is refused before the app runs. A streamed body
    is counted as the app reads it: past the limit the read raises, whatever the app answers is
    dropped, and the client gets the 413. ``on_reject(scope)`` is called once per refusal.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        on_reject: Callable[[Scope], None] | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._reject(scope, send)
            return
        seen = 0
        too_large = False
        started = False

        async def limited() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    too_large = True
                    raise _BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_large:
                return  # the app's answer to a truncated body is replaced by the 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        with contextlib.suppress(_BodyTooLargeError):
            await self.app(scope, limited, guarded_send)
        if too_large and not started:
            await self._reject(scope, send)

    async def _reject(self, scope: Scope, send: Send) -> None:
        if self.on_reject is not None:
            self.on_reject(scope)
        response = JSONResponse(
            error_body(
                "payload_too_large",
                f"body: request body exceeds {self.limit} bytes",
                {"field": "body", "limit_bytes": self.limit},
            ),
            413,
        )
        await response({"type": "http"}, _empty_receive, send)


class _BodyTooLargeError(Exception):
    pass


async def _empty_receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class MetricsMiddleware:
    """Count requests and time them per route template (not per raw path); write the audit
    line of requests ``require_scope`` marked (admin and catalog changes, see ``_audit``)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service
        # (route, method, status) -> its counter and histogram: labels() costs a lookup under a lock
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = _route_template(scope)
            count, duration = self._series_of(route, scope.get("method", "GET"), status)
            count.inc()
            duration.observe(time.perf_counter() - start)
            _audit(scope, route, status)

    def _series_of(self, route: str, method: str, status: int) -> tuple[Counter, Histogram]:
        series = self._series.get((route, method, status))
        if series is None:
            series = self._series[(route, method, status)] = (
                metrics.HTTP_REQUESTS.labels(self.service, route, method, str(status)),
                metrics.HTTP_REQUEST_DURATION.labels(self.service, route, method),
            )
        return series


def _route_template(scope: Scope) -> str:
    # the route the router chose, if it matched fully (not a 405); else look through them all
    chosen = scope.get("route")
    if chosen is not None and chosen.matches(scope)[0] is Match.FULL:
        return str(getattr(chosen, "path", "unknown"))
    app = scope.get("app")
    router = getattr(app, "router", None)
    for route in getattr(router, "routes", []):
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(getattr(route, "path", "unknown"))
    return "unmatched"


def install_common(
    app: FastAPI,
    *,
    service: str,
    http: HttpSettings,
    readiness: ReadinessCheck,
    on_body_rejected: Callable[[Scope], None] | None = None,
) -> None:
    """Error handlers, CORS, body limit, request metrics, /healthz, /readyz, /metrics.

    Middleware order, outermost first: metrics, CORS (so error answers, 413 included, carry the
    CORS headers a browser needs to read them), body limit, then the app.
    """
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, limit=http.max_body_bytes, on_reject=on_body_rejected)
    if http.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=http.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
            allow_headers=["Content-Type", "X-API-Key"],
            expose_headers=["Retry-After"],
            max_age=600,
        )
    app.add_middleware(MetricsMiddleware, service=service)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> Response:
        """Dependencies usable: 200 when all checks pass, else 503 with the failing ones."""
        checks = await readiness()
        for dep, ok in checks.items():
            metrics.DEPENDENCY_UP.labels(service, dep).set(1 if ok else 0)
        ready = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "checks": checks},
            200 if ready else 503,
        )

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(metrics.exposition(service), media_type=CONTENT_TYPE_LATEST)


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """Token buckets by name (per process), the one limiter of every service: API keys
    (``KeyRing``), browser keys per client address, the recommender's reads per client.

    A name may spend ``burst`` at once and regains ``rate_per_s`` per second. Past
    ``max_buckets`` names (per-client buckets) the ones idle for a minute are forgotten.
    """

    buckets: dict[str, _Bucket] = field(default_factory=dict)
    max_buckets: int = 100_000

    def wait(self, name: str, rate_per_s: float, burst: float, cost: float = 1.0) -> float:
        """Charge ``cost`` to ``name``: 0.0 if granted, else the seconds until it would be
        (nothing is charged then). A cost above ``burst`` is charged as ``burst``."""
        now = time.monotonic()
        bucket = self.buckets.get(name)
        if bucket is None:
            if len(self.buckets) > self.max_buckets:
                self.buckets = {k: b for k, b in self.buckets.items() if now - b.updated < 60}
            bucket = self.buckets[name] = _Bucket(burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate_per_s)
        bucket.updated = now
        cost = min(cost, burst)
        if bucket.tokens < cost:
            return (cost - bucket.tokens) / rate_per_s
        bucket.tokens -= cost
        return 0.0


@dataclass
class KeyRing:
    """API keys with scopes and a per-key token-bucket rate limit (per process)."""

    settings: AuthSettings
    limiter: RateLimiter = field(default_factory=RateLimiter)
    # presented value -> its key, for values that matched one: at most one per configured key
    verified: dict[str, ApiKey] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.open:
            logger.warning(
                "no API keys configured (STREAMREC_AUTH__API_KEYS): write, admin and "
                "personal-data endpoints are open to anyone (local development only)"
            )

    @property
    def open(self) -> bool:
        return not self.settings.api_keys

    def identify(self, presented: str | None) -> ApiKey | None:
        """The configured key ``presented`` is, or None (absent or unknown; no error)."""
        if not presented or self.open:
            return None
        key = self.verified.get(presented)
        if key is None:
            key = self.settings.find(presented)
            if key is not None:
                self.verified[presented] = key
        return key

    def authorize(
        self, presented: str | None, scope: KeyScope, client: str | None = None
    ) -> ApiKey | None:
        """The key presented, checked for ``scope`` and charged one request.

        A ``publishable`` (browser) key satisfies ``events:write`` only (send events, place
        orders) and is rate-limited per ``client`` address rather than as one key.
        """
        if self.open:
            return None
        if not presented:
            raise Unauthorized(
                "X-API-Key: header missing", details={"field": "X-API-Key", "scope": scope}
            )
        key = self.identify(presented)
        if key is None:
            raise Unauthorized("X-API-Key: unknown key", details={"field": "X-API-Key"})
        publishable = "publishable" in key.scopes
        if publishable and scope == "events:write":
            self._take(key, 1.0, client)
            return key
        if scope not in key.scopes and "admin" not in key.scopes:
            raise Forbidden(
                f"X-API-Key: key '{key.name}' lacks scope '{scope}'",
                details={"field": "X-API-Key", "required_scope": scope, "scopes": key.scopes},
            )
        self._take(key, 1.0)
        return key

    def _take(self, key: ApiKey, cost: float, client: str | None = None) -> None:
        name = f"{key.name}@{client}" if client else key.name
        wait = self.limiter.wait(name, key.rate_per_s, key.burst, cost)
        if wait > 0:
            raise RateLimited(
                f"X-API-Key: rate limit of {key.rate_per_s:g} requests/s exceeded",
                retry_after=wait,
                details={"field": "X-API-Key", "rate_per_s": key.rate_per_s},
            )


API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key",
    scheme_name="ApiKey",
    description="an API key with the scope the route names (admin covers every scope)",
    auto_error=False,
)
"""The ``X-API-Key`` security scheme of every service's OpenAPI document (the check itself is
``KeyRing.authorize``'s, so a missing key is our 401, not FastAPI's 403)."""
API_KEY_SECURITY: list[dict[str, list[str]]] = [{"ApiKey": []}]
"""The OpenAPI ``security`` of a route that checks the key itself (a fast path's route)."""


def require_scope(scope: KeyScope) -> Any:
    """A dependency that checks ``X-API-Key`` against ``app.state.keyring`` for ``scope``
    (declared as the ``ApiKey`` security scheme, so Swagger's "Authorize" sends it)."""

    async def check(
        request: Request, presented: Annotated[str | None, Security(API_KEY_HEADER)]
    ) -> ApiKey | None:
        ring: KeyRing = request.app.state.keyring
        client = request.client.host if request.client else None
        audited = scope in AUDITED_SCOPES and request.method not in ("GET", "HEAD")
        if audited:  # denied attempts are audited too: MetricsMiddleware writes the line
            known = ring.identify(presented)
            name = known.name if known is not None else "unknown" if presented else "missing"
            request.state.audit = {"scope": scope, "key": name}
        key = ring.authorize(presented, scope, client)
        if audited:
            request.state.audit["key"] = key.name if key is not None else "open"
        return key

    return Security(check)


AUDITED_SCOPES: frozenset[KeyScope] = frozenset({"admin", "catalog:write", "import"})
"""Scopes whose state-changing calls (any method but GET/HEAD) leave an audit line: who (the
key's name, never the key), what (method, path, route), when, from where, and the answer."""

audit_logger = logging.getLogger("streamrec.audit")


def _audit(scope: Scope, route: str, status: int) -> None:
    """The audit line of one audited request (``require_scope`` marked it), as a JSON log
    record of logger ``streamrec.audit``: ship it with the service's logs."""
    audit = scope.get("state", {}).get("audit")
    if audit is None:
        return
    client = scope.get("client")
    refused = status in (401, 403)
    outcome = "allowed" if status < 400 else "refused" if refused else "failed"
    audit_logger.info(
        "audit %s %s by %s: %d",
        scope.get("method", ""),
        scope.get("path", ""),
        audit["key"],
        status,
        extra={
            "audit": True,
            "key": audit["key"],
            "scope": audit["scope"],
            "method": scope.get("method", ""),
            "path": scope.get("path", ""),
            "route": route,
            "status": status,
            "client": client[0] if client else None,
            "outcome": outcome,
        },
    )


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": {"code", "message", "details"}}``."""

    error: ErrorInfo


ERROR_DESCRIPTIONS: Mapping[int, str] = {
    400: "the body is not JSON",
    401: "X-API-Key missing or unknown",
    403: "the key lacks the required scope",
    404: "not found",
    409: "conflicts with what is stored",
    413: "request body too large",
    422: "invalid request: details name each invalid field (batches: by index and field)",
    429: "rate limit exceeded (Retry-After)",
    503: "a dependency is unavailable; nothing was changed (Retry-After)",
}


def error_responses(
    *codes: int, descriptions: Mapping[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route's error answers, all ``ErrorBody`` (a 422 listed
    here replaces FastAPI's default ``HTTPValidationError``, which is not what we answer)."""
    text = {**ERROR_DESCRIPTIONS, **(descriptions or {})}
    return {c: {"model": ErrorBody, "description": text[c]} for c in codes}


AdminKey = Annotated[ApiKey | None, require_scope("admin")]


def serve(
    app: ASGIApp | str,
    service: str,
    http: HttpSettings,
    log: LogSettings,
    **uvicorn_options: Any,
) -> None:
    """Configure logging for ``service`` and run ``app`` (an app, or a ``"module:factory"``
    string with ``factory=True``) under uvicorn with httptools and uvloop, on ``http``'s address.
    uvicorn's own logging and access log are off: the services log through ``logs``."""
    import uvicorn  # the service's dependency; imported here so importing this module stays light

    logs.configure(service, log.level, json_format=log.json_format)
    uvicorn.run(
        app,
        host=http.host,
        port=http.port,
        http="httptools",
        loop="uvloop",
        log_config=None,
        access_log=False,
        **uvicorn_options,
    )
