"""Per-client rate limit of the read routes, in front of the fast path and the app.

Reads are open (no key needed), so without a limit one client could ask for as many
recommendations as the service can compute. Every GET under ``/v1/`` and the batch POST are
charged to a token bucket (``streamrec_shared.http.RateLimiter``, the limiter API keys use too):
a request with a configured ``X-API-Key`` to that key's bucket at the key's rate and burst,
any other to its client address at ``read_rate_per_s`` / ``read_burst``. A batch costs one
token per user id (at most the burst). Over the limit: 429 ``rate_limited`` with
``Retry-After`` and the limit in the details. Buckets are per worker process.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from streamrec_shared.errors import RateLimited
from streamrec_shared.http import KeyRing, domain_response

BATCH_PATH = "/v1/recommendations/batch"


@dataclass
class ReadLimit:
    """Charges reads to their client's bucket; ``rate_per_s`` 0 turns the anonymous limit off."""

    keyring: KeyRing
    rate_per_s: float
    burst: float

    def charge(self, scope: Scope, cost: float = 1.0) -> None:
        """Charge ``cost`` reads to the request's client; raises ``RateLimited``."""
        presented = next((v for k, v in scope["headers"] if k == b"x-api-key"), None)
        key = self.keyring.identify(presented.decode("latin-1")) if presented else None
        if key is not None:
            name, rate, burst, who = f"read:{key.name}", key.rate_per_s, key.burst, "X-API-Key"
        else:
            if self.rate_per_s <= 0:
                return
            client = scope.get("client")
            host = client[0] if client else "-"
            name, rate, burst, who = f"read@{host}", self.rate_per_s, self.burst, "client"
        wait = self.keyring.limiter.wait(name, rate, burst, cost)
        if wait > 0:
            raise RateLimited(
                f"{who}: read rate limit of {rate:g} requests/s (burst {burst:g}) exceeded",
                retry_after=wait,
                details={"field": who, "rate_per_s": rate, "burst": burst},
            )


def is_read(scope: Scope) -> bool:
    path: str = scope["path"]
    if not path.startswith("/v1/"):
        return False
    return scope["method"] == "GET" or (scope["method"] == "POST" and path == BATCH_PATH)


class ReadLimitMiddleware:
    """ASGI: answers 429 to a read over its client's limit, passes everything else on."""

    def __init__(self, app: ASGIApp, limit: ReadLimit) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_read(scope):
            try:
                self.limit.charge(scope)
            except RateLimited as exc:
                await domain_response(exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)
