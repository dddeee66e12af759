"""Clients for the streamrec HTTP API (httpx + pydantic): ``StreamrecClient`` (blocking) and
``AsyncStreamrecClient``, with the same methods and typed answers (``streamrec_client.models``).

Each API call is defined once (``_calls``: method, service, path, body, response model); the two
clients only differ in how they send it. One retry policy (``RetryPolicy``) for both: ``429``,
``502``, ``503``, ``504`` and connection errors are retried up to ``max_retries`` times and
``max_wait`` seconds of waiting in total, waiting what ``Retry-After`` asks (seconds or an HTTP
date; plus up to 20 % so many clients do not return together), else an exponential backoff with
full jitter. Every other error answer raises :class:`ApiError` at once with the server's error
body, so callers see which field was wrong (``err.details``).

Ids in paths are percent-escaped (``a/b`` is one id, not a path). Retrying a write is safe:
events get an ``event_id`` on the client before the first attempt (unless they carry one), so the
server sees the same ids on every attempt and downstream counts each event once; orders are
idempotent on ``order_id``; catalog writes are full-state puts.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypedDict, TypeVar, Unpack
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from streamrec_client import models

Service = Literal["ingest", "recommender", "trainer"]
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_BATCH = 1000
# how the clients wait between attempts and draw jitter (tests replace these)
_async_sleep = asyncio.sleep
_sleep = time.sleep
_random = random.random

T = TypeVar("T", bound=BaseModel)


class ApiError(Exception):
    """A non-retryable error answer (or retries exhausted): ``status``, ``code``, ``details``."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        err = self._error()
        super().__init__(f"HTTP {status}: {err.get('code', '')} {err.get('message', body)}")

    def _error(self) -> dict[str, Any]:
        err = self.body.get("error") if isinstance(self.body, dict) else None
        return err if isinstance(err, dict) else {}

    @property
    def code(self) -> str | None:
        return self._error().get("code")

    @property
    def details(self) -> Any:
        return self._error().get("details")


def retry_after_s(response: httpx.Response | None) -> float | None:
    """The wait a ``Retry-After`` header asks for (seconds or an HTTP date), None without one."""
    value = response.headers.get("retry-after") if response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before another attempt (see the module docstring)."""

    max_retries: int = 5
    """Attempts after the first."""
    max_wait: float = 30.0
    """Seconds of waiting between attempts, in total, before giving up."""
    backoff_base: float = 0.1
    """Without Retry-After: up to ``backoff_base * 2**attempt`` seconds (full jitter) ..."""
    backoff_cap: float = 5.0
    """... and never more than this."""
    retry_after_jitter: float = 0.2
    """With Retry-After: that wait plus up to this fraction of it."""

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        """Seconds before attempt ``attempt + 1`` (``attempt`` counts from 0)."""
        asked = retry_after_s(response)
        if asked is not None:
            return asked * (1.0 + self.retry_after_jitter * _random())
        return float(min(self.backoff_cap, self.backoff_base * 2**attempt) * _random())


class RequestOptions(TypedDict, total=False):
    """Options of ``request``: a JSON body, query parameters, and whether to retry."""

    json: Any
    params: Mapping[str, Any] | None
    retry: bool


@dataclass
class _Exchange:
    """One call and its retry state: ``settle`` takes each attempt's outcome and says how long
    to wait before the next (None: done, the answer is in ``result``), or raises."""

    method: str
    url: str
    options: RequestOptions
    policy: RetryPolicy
    attempt: int = 0
    waited: float = 0.0
    result: Any = None

    def send_args(self) -> dict[str, Any]:
        """The body and query of the request, as httpx's ``request`` takes them."""
        return {"json": self.options.get("json"), "params": self.options.get("params")}

    def settle(self, outcome: httpx.Response | httpx.TransportError) -> float | None:
        response = outcome if isinstance(outcome, httpx.Response) else None
        if response is not None and response.status_code < 400:
            self.result = _json_or_text(response)
            return None
        retryable = response is None or response.status_code in RETRY_STATUSES
        delay = self.policy.delay(self.attempt, response)
        if (
            not (self.options.get("retry", True) and retryable)
            or self.attempt >= self.policy.max_retries
            or self.waited + delay > self.policy.max_wait
        ):
            if isinstance(outcome, httpx.TransportError):
                raise outcome
            raise ApiError(outcome.status_code, _json_or_text(outcome))
        self.attempt += 1
        self.waited += delay
        return delay


def _json_or_text(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return {"error": {"code": "http_error", "message": response.text[:200]}}


@dataclass(frozen=True)
class Call(Generic[T]):
    """One HTTP request of the API and the model its answer is parsed into."""

    method: str
    service: Service
    path: str
    model: type[T]
    json: Any = None
    params: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Plan(Generic[T]):
    """The requests of one client method (several for big batches) and how to merge answers."""

    calls: Sequence[Call[T]]
    merge: Callable[[list[T]], T] = field(default=lambda answers: answers[0])


def _path(template: str, *ids: str | int) -> str:
    """``template`` with each id percent-escaped as one path segment."""
    return template.format(*(quote(str(i), safe="") for i in ids))


def with_event_ids(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``events`` each with an ``event_id`` (a new uuid4 hex where absent)."""
    out = []
    for event in events:
        copy = dict(event)
        if copy.get("event_id") is None:
            copy["event_id"] = uuid.uuid4().hex
        out.append(copy)
    return out


def _batched(path: str, key: str, items: list[dict[str, Any]], model: type[T], ids: str) -> Plan[T]:
    """POST ``{key: chunk}`` per chunk of <= MAX_BATCH; answers summed (accepted, ids)."""
    calls = [
        Call("POST", "ingest", path, model, json={key: items[i : i + MAX_BATCH]})
        for i in range(0, len(items), MAX_BATCH)
    ]

    def merge(answers: list[T]) -> T:
        return model.model_validate(
            {
                "accepted": sum(getattr(a, "accepted") for a in answers),  # noqa: B009
                ids: [i for a in answers for i in getattr(a, ids)],
            }
        )

    return Plan(calls, merge)


class _calls:  # noqa: N801 (a namespace of call definitions)
    """Every API call the clients offer, defined once."""

    @staticmethod
    def send_events(events: Iterable[Mapping[str, Any]]) -> Plan[models.EventsAccepted]:
        return _batched(
            "/v1/events", "events", with_event_ids(events), models.EventsAccepted, "event_ids"
        )

    @staticmethod
    def send_event(event: Mapping[str, Any]) -> Plan[models.EventsAccepted]:
        (prepared,) = with_event_ids([event])
        return Plan([Call("POST", "ingest", "/v1/events", models.EventsAccepted, json=prepared)])

    @staticmethod
    def put_product(product_id: str, product: Mapping[str, Any]) -> Plan[models.ProductsAccepted]:
        body = {k: v for k, v in product.items() if k != "product_id"}
        path = _path("/v1/products/{}", product_id)
        return Plan([Call("PUT", "ingest", path, models.ProductsAccepted, json=body)])

    @staticmethod
    def put_products(products: Iterable[Mapping[str, Any]]) -> Plan[models.ProductsAccepted]:
        items = [dict(p) for p in products]
        return _batched("/v1/products", "products", items, models.ProductsAccepted, "product_ids")

    @staticmethod
    def delete_product(product_id: str) -> Plan[models.ProductsAccepted]:
        path = _path("/v1/products/{}", product_id)
        return Plan([Call("DELETE", "ingest", path, models.ProductsAccepted)])

    @staticmethod
    def put_user(user_id: str, attributes: Mapping[str, Any]) -> Plan[models.UserAccepted]:
        body = {"attributes": dict(attributes)}
        return Plan(
            [Call("PUT", "ingest", _path("/v1/users/{}", user_id), models.UserAccepted, body)]
        )

    @staticmethod
    def post_order(order: Mapping[str, Any]) -> Plan[models.OrderAccepted]:
        return Plan([Call("POST", "ingest", "/v1/orders", models.OrderAccepted, json=dict(order))])

    @staticmethod
    def recommendations(user_id: str, params: Mapping[str, Any]) -> Plan[models.Recommendations]:
        path = _path("/v1/recommendations/{}", user_id)
        return Plan([Call("GET", "recommender", path, models.Recommendations, params=params)])

    @staticmethod
    def user_profile(user_id: str) -> Plan[models.UserProfile]:
        path = _path("/v1/users/{}/profile", user_id)
        return Plan([Call("GET", "recommender", path, models.UserProfile)])

    @staticmethod
    def train(params: Mapping[str, Any] | None) -> Plan[models.TrainAccepted]:
        body = {"params": dict(params)} if params else {}
        return Plan([Call("POST", "trainer", "/v1/train", models.TrainAccepted, json=body)])

    @staticmethod
    def train_job(job_id: str) -> Plan[models.TrainJob]:
        return Plan([Call("GET", "trainer", _path("/v1/train/{}", job_id), models.TrainJob)])


class _Base:
    """What both clients share: base URLs, the API key header, the retry policy."""

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
        transport: Any = None,
    ) -> None:
        """``transport``: an ``httpx.BaseTransport`` (sync) or ``AsyncBaseTransport`` (async),
        e.g. ``httpx.MockTransport`` in tests."""
        self.headers = {"X-API-Key": api_key} if api_key else {}
        self.urls: dict[str, str | None] = {
            "ingest": ingest_url,
            "recommender": recommender_url,
            "trainer": trainer_url,
        }
        self.retry_policy = RetryPolicy(max_retries=max_retries, max_wait=max_wait)
        self._open(timeout, transport)

    def _open(self, timeout: float, transport: Any) -> None:
        raise NotImplementedError

    def _url(self, service: str, path: str) -> str:
        base = self.urls.get(service)
        if not base:
            raise ValueError(f"no base URL configured for the {service} service")
        return base.rstrip("/") + path

    def _exchange(
        self, method: str, service: Service, path: str, options: RequestOptions
    ) -> _Exchange:
        return _Exchange(method, self._url(service, path), options, self.retry_policy)


_POLL_S = 0.25


class StreamrecClient(_Base):
    """Blocking client for one or more streamrec services (a base URL per service)."""

    def _open(self, timeout: float, transport: httpx.BaseTransport | None) -> None:
        self._http = httpx.Client(headers=self.headers, timeout=timeout, transport=transport)

    def __enter__(self) -> StreamrecClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(
        self, method: str, service: Service, path: str, **options: Unpack[RequestOptions]
    ) -> Any:
        """Any endpoint: send with retries, return the parsed JSON (None for an empty body)."""
        call = self._exchange(method, service, path, options)
        while (delay := call.settle(self._attempt(call))) is not None:
            _sleep(delay)
        return call.result

    def _attempt(self, call: _Exchange) -> httpx.Response | httpx.TransportError:
        try:
            return self._http.request(call.method, call.url, **call.send_args())
        except httpx.TransportError as exc:
            return exc

    def _run(self, plan: Plan[T]) -> T:
        return plan.merge(
            [
                c.model.model_validate(
                    self.request(c.method, c.service, c.path, json=c.json, params=c.params)
                )
                for c in plan.calls
            ]
        )

    # --- ingest ---
    def send_events(self, events: Iterable[Mapping[str, Any]]) -> models.EventsAccepted:
        """POST events in batches of <= 1000; each gets an event_id first, so retries dedupe."""
        return self._run(_calls.send_events(events))

    def send_event(self, event: Mapping[str, Any]) -> models.EventsAccepted:
        return self._run(_calls.send_event(event))

    def put_product(self, product_id: str, product: Mapping[str, Any]) -> models.ProductsAccepted:
        return self._run(_calls.put_product(product_id, product))

    def put_products(self, products: Iterable[Mapping[str, Any]]) -> models.ProductsAccepted:
        """POST products in batches of <= 1000 (each with its product_id)."""
        return self._run(_calls.put_products(products))

    def delete_product(self, product_id: str) -> models.ProductsAccepted:
        return self._run(_calls.delete_product(product_id))

    def put_user(self, user_id: str, attributes: Mapping[str, Any]) -> models.UserAccepted:
        return self._run(_calls.put_user(user_id, attributes))

    def post_order(self, order: Mapping[str, Any]) -> models.OrderAccepted:
        """Idempotent on ``order_id``: a retried order is stored and counted once."""
        return self._run(_calls.post_order(order))

    # --- recommender ---
    def recommendations(self, user_id: str, **params: Any) -> models.Recommendations:
        """``k``, ``algorithm``, ``category``, ``exclude`` as query parameters."""
        return self._run(_calls.recommendations(user_id, params))

    def user_profile(self, user_id: str) -> models.UserProfile:
        return self._run(_calls.user_profile(user_id))

    # --- trainer ---
    def train(self, params: Mapping[str, Any] | None = None) -> str:
        """Start a training job; returns its id."""
        return self._run(_calls.train(params)).job_id

    def train_job(self, job_id: str) -> models.TrainJob:
        return self._run(_calls.train_job(job_id))

    def wait_for_job(self, job_id: str, *, timeout: float = 300.0) -> models.TrainJob:
        """Poll a training job until it leaves queued/running."""
        deadline = time.monotonic() + timeout
        while not (job := self.train_job(job_id)).finished:
            if time.monotonic() > deadline:
                raise TimeoutError(f"training job {job_id} still {job.status}")
            _sleep(_POLL_S)
        return job


class AsyncStreamrecClient(_Base):
    """Async twin of :class:`StreamrecClient`: the same methods, awaited."""

    def _open(self, timeout: float, transport: httpx.AsyncBaseTransport | None) -> None:
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
        self, method: str, service: Service, path: str, **options: Unpack[RequestOptions]
    ) -> Any:
        """Any endpoint: send with retries, return the parsed JSON (None for an empty body)."""
        call = self._exchange(method, service, path, options)
        while (delay := call.settle(await self._attempt(call))) is not None:
            await _async_sleep(delay)
        return call.result

    async def _attempt(self, call: _Exchange) -> httpx.Response | httpx.TransportError:
        try:
            return await self._http.request(call.method, call.url, **call.send_args())
        except httpx.TransportError as exc:
            return exc

    async def _run(self, plan: Plan[T]) -> T:
        answers = []
        for c in plan.calls:
            raw = await self.request(c.method, c.service, c.path, json=c.json, params=c.params)
            answers.append(c.model.model_validate(raw))
        return plan.merge(answers)

    async def send_events(self, events: Iterable[Mapping[str, Any]]) -> models.EventsAccepted:
        return await self._run(_calls.send_events(events))

    async def send_event(self, event: Mapping[str, Any]) -> models.EventsAccepted:
        return await self._run(_calls.send_event(event))

    async def put_product(
        self, product_id: str, product: Mapping[str, Any]
    ) -> models.ProductsAccepted:
        return await self._run(_calls.put_product(product_id, product))

    async def put_products(self, products: Iterable[Mapping[str, Any]]) -> models.ProductsAccepted:
        return await self._run(_calls.put_products(products))

    async def delete_product(self, product_id: str) -> models.ProductsAccepted:
        return await self._run(_calls.delete_product(product_id))

    async def put_user(self, user_id: str, attributes: Mapping[str, Any]) -> models.UserAccepted:
        return await self._run(_calls.put_user(user_id, attributes))

    async def post_order(self, order: Mapping[str, Any]) -> models.OrderAccepted:
        return await self._run(_calls.post_order(order))

    async def recommendations(self, user_id: str, **params: Any) -> models.Recommendations:
        return await self._run(_calls.recommendations(user_id, params))

    async def user_profile(self, user_id: str) -> models.UserProfile:
        return await self._run(_calls.user_profile(user_id))

    async def train(self, params: Mapping[str, Any] | None = None) -> str:
        return (await self._run(_calls.train(params))).job_id

    async def train_job(self, job_id: str) -> models.TrainJob:
        return await self._run(_calls.train_job(job_id))

    async def wait_for_job(
        self,
        job_id: str,
        *,
        timeout: float = 300.0,  # noqa: ASYNC109 (a polling deadline, kept for callers)
    ) -> models.TrainJob:
        deadline = time.monotonic() + timeout
        while not (job := await self.train_job(job_id)).finished:
            if time.monotonic() > deadline:
                raise TimeoutError(f"training job {job_id} still {job.status}")
            await _async_sleep(_POLL_S)
        return job
