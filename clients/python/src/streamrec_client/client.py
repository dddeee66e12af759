"""Typed HTTP clients for streamrec (httpx): events, catalog, orders, recommendations, training.

``AsyncStreamrecClient`` and ``StreamrecClient`` (sync) share one retry policy: ``503``, ``429``,
``502``, ``504`` and connection errors are retried honouring ``Retry-After`` (seconds or an
HTTP date), up to ``max_retries`` times and ``max_wait`` seconds of waiting in total; every other
4xx raises :class:`ApiError` at once with the server's error body, so callers see which field
was wrong (``err.details``).

Retrying a write is safe: events get an ``event_id`` on the client before the first attempt
(unless they carry one), so the server sees the same ids on every attempt and downstream counts
each event once; orders are idempotent on ``order_id``; catalog writes are full-state puts.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, TypedDict

import httpx

RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_BATCH = 1000
# how the clients wait between attempts (tests replace these)
_async_sleep = asyncio.sleep
_sleep = time.sleep


class EventsAccepted(TypedDict):
    accepted: int
    event_ids: list[str]


class ProductsAccepted(TypedDict):
    accepted: int
    product_ids: list[str]


class UserAccepted(TypedDict):
    accepted: int
    user_id: str


class OrderAccepted(TypedDict):
    accepted: int
    order_id: str
    event_ids: list[str]
    replayed: bool


class ApiError(Exception):
    """A non-retryable error answer (or retries exhausted)."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        err = body.get("error", {}) if isinstance(body, dict) else {}
        super().__init__(f"HTTP {status}: {err.get('code', '')} {err.get('message', body)}")

    @property
    def code(self) -> str | None:
        err = self.body.get("error", {}) if isinstance(self.body, dict) else {}
        return err.get("code") if isinstance(err, dict) else None

    @property
    def details(self) -> Any:
        return self.body.get("error", {}).get("details") if isinstance(self.body, dict) else None


def retry_after_s(response: httpx.Response | None, attempt: int) -> float:
    """Seconds to wait before attempt ``attempt + 1``: Retry-After, else exponential backoff."""
    if response is not None:
        value = response.headers.get("retry-after")
        if value:
            try:
                return max(0.0, float(value))
            except ValueError:
                pass
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return float(min(0.1 * 2**attempt, 5.0))


def _decode(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {"error": {"code": "http_error", "message": response.text[:200]}}


class _Retry:
    """The retry decision shared by both clients."""

    def __init__(self, max_retries: int, max_wait: float) -> None:
        self.max_retries = max_retries
        self.max_wait = max_wait
        self.waited = 0.0

    def delay(
        self,
        attempt: int,
        response: httpx.Response | None,
        error: httpx.TransportError | None,
        retry: bool,
    ) -> float:
        """Seconds to sleep before retrying; raises when the call is over."""
        if response is not None and response.status_code < 400:
            raise AssertionError("success is not retried")
        final = not retry or attempt >= self.max_retries
        if error is not None:
            if final:
                raise error
        else:
            assert response is not None
            if final or response.status_code not in RETRY_STATUSES:
                raise ApiError(response.status_code, _decode(response))
        delay = retry_after_s(response, attempt)
        if self.waited + delay > self.max_wait:
            if error is not None:
                raise error
            assert response is not None
            raise ApiError(response.status_code, _decode(response))
        self.waited += delay
        return delay


def with_event_ids(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``events`` each with an ``event_id`` (a new uuid4 hex where absent)."""
    out = []
    for event in events:
        copy = dict(event)
        if copy.get("event_id") is None:
            copy["event_id"] = uuid.uuid4().hex
        out.append(copy)
    return out


def _chunks(items: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class _Base:
    def __init__(
        self,
        *,
        ingest_url: str | None,
        recommender_url: str | None,
        trainer_url: str | None,
        api_key: str | None,
        max_retries: int,
        max_wait: float,
    ) -> None:
        self.headers = {"X-API-Key": api_key} if api_key else {}
        self.urls = {"ingest": ingest_url, "recommender": recommender_url, "trainer": trainer_url}
        self.max_retries = max_retries
        self.max_wait = max_wait

    def _url(self, service: str, path: str) -> str:
        base = self.urls.get(service)
        if not base:
            raise ValueError(f"no base URL configured for the {service} service")
        return base.rstrip("/") + path


class AsyncStreamrecClient(_Base):
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
        super().__init__(
            ingest_url=ingest_url,
            recommender_url=recommender_url,
            trainer_url=trainer_url,
            api_key=api_key,
            max_retries=max_retries,
            max_wait=max_wait,
        )
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        self._http = httpx.AsyncClient(
            headers=self.headers, timeout=timeout, limits=limits, transport=transport
        )

    async def __aenter__(self) -> AsyncStreamrecClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

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
        policy = _Retry(self.max_retries, self.max_wait)
        url = self._url(service, path)
        attempt = 0
        while True:
            response: httpx.Response | None = None
            error: httpx.TransportError | None = None
            try:
                response = await self._http.request(method, url, json=json, params=params)
            except httpx.TransportError as exc:
                error = exc
            if response is not None and response.status_code < 400:
                return _decode(response) if response.content else None
            await _async_sleep(policy.delay(attempt, response, error, retry))
            attempt += 1

    # --- ingest ---
    async def send_events(self, events: Iterable[Mapping[str, Any]]) -> EventsAccepted:
        """POST events in batches of <= 1000; each gets an event_id first, so retries dedupe."""
        prepared = with_event_ids(events)
        total: EventsAccepted = {"accepted": 0, "event_ids": []}
        for chunk in _chunks(prepared, MAX_BATCH):
            result: EventsAccepted = await self.request(
                "POST", "ingest", "/v1/events", json={"events": chunk}
            )
            total["accepted"] += result["accepted"]
            total["event_ids"].extend(result["event_ids"])
        return total

    async def send_event(self, event: Mapping[str, Any]) -> EventsAccepted:
        (prepared,) = with_event_ids([event])
        result: EventsAccepted = await self.request("POST", "ingest", "/v1/events", json=prepared)
        return result

    async def put_product(self, product_id: str, product: Mapping[str, Any]) -> ProductsAccepted:
        body = {k: v for k, v in product.items() if k != "product_id"}
        result: ProductsAccepted = await self.request(
            "PUT", "ingest", f"/v1/products/{product_id}", json=body
        )
        return result

    async def put_products(self, products: Iterable[Mapping[str, Any]]) -> ProductsAccepted:
        """POST products in batches of <= 1000 (each with its product_id)."""
        items = [dict(p) for p in products]
        total: ProductsAccepted = {"accepted": 0, "product_ids": []}
        for chunk in _chunks(items, MAX_BATCH):
            result: ProductsAccepted = await self.request(
                "POST", "ingest", "/v1/products", json={"products": chunk}
            )
            total["accepted"] += result["accepted"]
            total["product_ids"].extend(result["product_ids"])
        return total

    async def delete_product(self, product_id: str) -> ProductsAccepted:
        result: ProductsAccepted = await self.request(
            "DELETE", "ingest", f"/v1/products/{product_id}"
        )
        return result

    async def put_user(self, user_id: str, attributes: Mapping[str, Any]) -> UserAccepted:
        result: UserAccepted = await self.request(
            "PUT", "ingest", f"/v1/users/{user_id}", json={"attributes": dict(attributes)}
        )
        return result

    async def post_order(self, order: Mapping[str, Any]) -> OrderAccepted:
        """Idempotent on ``order_id``: a retried order is stored and counted once."""
        result: OrderAccepted = await self.request("POST", "ingest", "/v1/orders", json=order)
        return result

    # --- recommender ---
    async def recommendations(self, user_id: str, **params: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "GET", "recommender", f"/v1/recommendations/{user_id}", params=params
        )
        return result

    async def user_profile(self, user_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "GET", "recommender", f"/v1/users/{user_id}/profile"
        )
        return result

    # --- trainer ---
    async def train(self) -> str:
        result = await self.request("POST", "trainer", "/v1/train", json={})
        return str(result["job_id"])

    async def train_job(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "trainer", f"/v1/train/{job_id}")
        return result

    async def wait_for_job(
        self,
        job_id: str,
        *,
        timeout: float = 300.0,  # noqa: ASYNC109 (a polling deadline, kept for callers)
    ) -> dict[str, Any]:
        """Poll a training job until it leaves queued/running."""
        deadline = time.monotonic() + timeout
        while True:
            job = await self.train_job(job_id)
            if job["status"] not in ("queued", "running"):
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"training job {job_id} still {job['status']}")
            await asyncio.sleep(0.25)


class StreamrecClient(_Base):
    """Blocking twin of :class:`AsyncStreamrecClient` (scripts, notebooks, loaders)."""

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
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            ingest_url=ingest_url,
            recommender_url=recommender_url,
            trainer_url=trainer_url,
            api_key=api_key,
            max_retries=max_retries,
            max_wait=max_wait,
        )
        self._http = httpx.Client(headers=self.headers, timeout=timeout, transport=transport)

    def __enter__(self) -> StreamrecClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(
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
        policy = _Retry(self.max_retries, self.max_wait)
        url = self._url(service, path)
        attempt = 0
        while True:
            response: httpx.Response | None = None
            error: httpx.TransportError | None = None
            try:
                response = self._http.request(method, url, json=json, params=params)
            except httpx.TransportError as exc:
                error = exc
            if response is not None and response.status_code < 400:
                return _decode(response) if response.content else None
            _sleep(policy.delay(attempt, response, error, retry))
            attempt += 1

    def send_events(self, events: Iterable[Mapping[str, Any]]) -> EventsAccepted:
        """POST events in batches of <= 1000; each gets an event_id first, so retries dedupe."""
        prepared = with_event_ids(events)
        total: EventsAccepted = {"accepted": 0, "event_ids": []}
        for chunk in _chunks(prepared, MAX_BATCH):
            result: EventsAccepted = self.request(
                "POST", "ingest", "/v1/events", json={"events": chunk}
            )
            total["accepted"] += result["accepted"]
            total["event_ids"].extend(result["event_ids"])
        return total

    def send_event(self, event: Mapping[str, Any]) -> EventsAccepted:
        (prepared,) = with_event_ids([event])
        result: EventsAccepted = self.request("POST", "ingest", "/v1/events", json=prepared)
        return result

    def put_product(self, product_id: str, product: Mapping[str, Any]) -> ProductsAccepted:
        body = {k: v for k, v in product.items() if k != "product_id"}
        result: ProductsAccepted = self.request(
            "PUT", "ingest", f"/v1/products/{product_id}", json=body
        )
        return result

    def put_products(self, products: Iterable[Mapping[str, Any]]) -> ProductsAccepted:
        items = [dict(p) for p in products]
        total: ProductsAccepted = {"accepted": 0, "product_ids": []}
        for chunk in _chunks(items, MAX_BATCH):
            result: ProductsAccepted = self.request(
                "POST", "ingest", "/v1/products", json={"products": chunk}
            )
            total["accepted"] += result["accepted"]
            total["product_ids"].extend(result["product_ids"])
        return total

    def delete_product(self, product_id: str) -> ProductsAccepted:
        result: ProductsAccepted = self.request("DELETE", "ingest", f"/v1/products/{product_id}")
        return result

    def put_user(self, user_id: str, attributes: Mapping[str, Any]) -> UserAccepted:
        result: UserAccepted = self.request(
            "PUT", "ingest", f"/v1/users/{user_id}", json={"attributes": dict(attributes)}
        )
        return result

    def post_order(self, order: Mapping[str, Any]) -> OrderAccepted:
        result: OrderAccepted = self.request("POST", "ingest", "/v1/orders", json=order)
        return result

    def recommendations(self, user_id: str, **params: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "GET", "recommender", f"/v1/recommendations/{user_id}", params=params
        )
        return result
