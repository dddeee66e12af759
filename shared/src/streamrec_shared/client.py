"""Typed HTTP client for streamrec (httpx): events, catalog, recommendations, training.

Retries ``503`` and ``429`` honouring ``Retry-After`` (and connection errors), up to
``max_retries`` with a bounded total wait; every other 4xx raises :class:`ApiError` at once
with the server's error body, so callers see which field was wrong.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

RETRY_STATUSES = frozenset({429, 502, 503, 504})


class ApiError(Exception):
    """A non-retryable error answer (or retries exhausted)."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        err = body.get("error", {}) if isinstance(body, dict) else {}
        super().__init__(f"HTTP {status}: {err.get('code', '')} {err.get('message', body)}")

    @property
    def details(self) -> Any:
        return self.body.get("error", {}).get("details") if isinstance(self.body, dict) else None


def _retry_after(response: httpx.Response | None, attempt: int) -> float:
    if response is not None:
        value = response.headers.get("retry-after")
        if value:
            try:
                return max(0.0, float(value))
            except ValueError:
                pass
    return min(0.1 * 2**attempt, 5.0)


def _decode(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {"error": {"code": "http_error", "message": response.text[:200]}}


class AsyncStreamrecClient:
    """Async client for one or more streamrec services (base URLs per service)."""

    def __init__(
        self,
        *,
        ingest_url: str | None = None,
        recommender_url: str | None = None,
        trainer_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 10.0,
        max_retries: int = 5,
        max_wait: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        self._http = httpx.AsyncClient(
            headers=headers, timeout=timeout, limits=limits, transport=transport
        )
        self.urls = {"ingest": ingest_url, "recommender": recommender_url, "trainer": trainer_url}
        self.max_retries = max_retries
        self.max_wait = max_wait

    async def __aenter__(self) -> AsyncStreamrecClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def _url(self, service: str, path: str) -> str:
        base = self.urls.get(service)
        if not base:
            raise ValueError(f"no base URL configured for the {service} service")
        return base.rstrip("/") + path

    async def request(
        self,
        method: str,
        service: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        retry: bool = True,
    ) -> Any:
        """Send one request; retry 429/5xx-unavailable per ``Retry-After``; return parsed JSON."""
        waited = 0.0
        for attempt in range(self.max_retries + 1):
            response: httpx.Response | None = None
            try:
                response = await self._http.request(
                    method, self._url(service, path), json=json, params=params
                )
            except httpx.TransportError:
                if not retry or attempt == self.max_retries:
                    raise
            if response is not None:
                if response.status_code < 400:
                    return _decode(response) if response.content else None
                if not retry or response.status_code not in RETRY_STATUSES:
                    raise ApiError(response.status_code, _decode(response))
                if attempt == self.max_retries:
                    raise ApiError(response.status_code, _decode(response))
            delay = _retry_after(response, attempt)
            if waited + delay > self.max_wait:
                status = response.status_code if response is not None else 0
                raise ApiError(status, _decode(response) if response is not None else {})
            waited += delay
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    # --- ingest ---
    async def send_events(self, events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """POST a batch (<= 1000). Give each event an event_id to make retries idempotent."""
        result: dict[str, Any] = await self.request(
            "POST", "ingest", "/v1/events", json={"events": list(events)}
        )
        return result

    async def send_event(self, event: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", "ingest", "/v1/events", json=event)
        return result

    async def put_product(self, product_id: str, product: Mapping[str, Any]) -> dict[str, Any]:
        body = {k: v for k, v in product.items() if k != "product_id"}
        result: dict[str, Any] = await self.request(
            "PUT", "ingest", f"/v1/products/{product_id}", json=body
        )
        return result

    async def put_products(self, products: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST", "ingest", "/v1/products", json={"products": list(products)}
        )
        return result

    async def delete_product(self, product_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "DELETE", "ingest", f"/v1/products/{product_id}"
        )
        return result

    async def put_user(self, user_id: str, attributes: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "PUT", "ingest", f"/v1/users/{user_id}", json={"attributes": dict(attributes)}
        )
        return result

    async def post_order(self, order: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", "ingest", "/v1/orders", json=order)
        return result

    # --- recommender ---
    async def recommendations(self, user_id: str, **params: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "GET", "recommender", f"/v1/recommendations/{user_id}", params=params
        )
        return result

    # --- trainer ---
    async def train(self) -> str:
        result = await self.request("POST", "trainer", "/v1/train", json={})
        return str(result["job_id"])

    async def train_job(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "trainer", f"/v1/train/{job_id}")
        return result

    async def wait_for_job(self, job_id: str, *, timeout: float = 300.0) -> dict[str, Any]:
        """Poll a training job until it leaves queued/running."""
        deadline = time.monotonic() + timeout
        while True:
            job = await self.train_job(job_id)
            if job["status"] not in ("queued", "running"):
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"training job {job_id} still {job['status']}")
            await asyncio.sleep(0.25)
