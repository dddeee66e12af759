"""The fast path reads the request by the route's own definition: the same 200 and 422 answers;
everything it does not answer goes to FastAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

import httpx
import pytest
import pytest_asyncio
from prometheus_client import REGISTRY
from starlette.types import Receive, Scope, Send

from streamrec_dev.synthetic_model import make_bundle
from streamrec_recommender.api.app import create_app, with_fast_path
from streamrec_recommender.api.fastpath import FastPath
from streamrec_recommender.api.request import parse
from streamrec_recommender.runtime.model_handle import prepare
from streamrec_recommender.runtime.recommender import Recommender
from streamrec_recommender.settings import RecommenderSettings


def test_parse_accepts_ordinary_requests() -> None:
    req = parse("/v1/recommendations/u 1", b"k=5&algorithm=als&category=&exclude=a,%20b,,")
    assert req is not None
    assert (req.user_id, req.k, req.algorithm, req.category) == ("u 1", 5, "als", None)
    assert req.exclude == ("a", "b")
    default = parse("/v1/recommendations/x", b"")
    assert default is not None
    assert (default.k, default.algorithm) == (10, "auto")
    # the path arrives percent-decoded once (by the server): it is not decoded again
    once = parse("/v1/recommendations/u0000%31", b"")
    assert once is not None
    assert once.user_id == "u0000%31"
    # unknown parameters are ignored, as the route ignores them
    assert parse("/v1/recommendations/x", b"trace=1") == default


def test_parse_defers_what_the_route_rejects() -> None:
    for path, query in [
        ("/v1/recommendations/", b""),
        ("/v1/recommendations/a/b", b""),
        ("/v1/recommendations/x", b"k=0"),
        ("/v1/recommendations/x", b"k=101"),
        ("/v1/recommendations/x", b"k=-1"),
        ("/v1/recommendations/x", b"k=ten"),
        ("/v1/recommendations/x", b"k=%C2%B2"),  # str.isdigit() says yes, int() says no
        ("/v1/recommendations/x", b"k="),
        ("/v1/recommendations/x", b"algorithm=magic"),
        ("/v1/recommendations/" + "u" * 129, b""),
        ("/v1/recommendations/x", b"category=" + b"c" * 129),
    ]:
        assert parse(path, query) is None, (path, query)


@pytest_asyncio.fixture(loop_scope="session")
async def both(
    offline_settings: RecommenderSettings,
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """(fast path in front of the app, the app alone) over one app and one lifespan."""
    s = offline_settings
    model = prepare(make_bundle(n_items=200, n_users=50), s.recommender)
    app = create_app(s, model=model, watch_models=False)
    async with app.router.lifespan_context(app):
        fast = httpx.ASGITransport(app=with_fast_path(app))
        plain = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(transport=fast, base_url="http://rec") as f,
            httpx.AsyncClient(transport=plain, base_url="http://rec") as p,
        ):
            yield f, p


VOLATILE = ("rec_id", "latency_ms")


@pytest.mark.parametrize(
    "url",
    [
        "/v1/recommendations/u0000009?k=4&algorithm=als",
        "/v1/recommendations/u0000009?k=3&algorithm=popular&exclude=p000001,p000002",
        "/v1/recommendations/u0000009?k=4&algorithm=als&trace=1",
        "/v1/recommendations/u0000%2531?k=3&algorithm=als",  # decoded once: user "u0000%31"
        "/v1/recommendations/u00001?k=3&algorithm=als",
        "/v1/recommendations/u1?k=%C2%B2",  # k=² : a 422 naming k, never a plain-text 500
        "/v1/recommendations/u1?k=0",
        "/v1/recommendations/u1?k=",
        "/v1/recommendations/u1?algorithm=magic",
        "/v1/recommendations/" + "u" * 129,
    ],
)
async def test_fast_path_and_route_give_the_same_answer(
    both: tuple[httpx.AsyncClient, httpx.AsyncClient], url: str
) -> None:
    fast, plain = both
    a, b = await fast.get(url), await plain.get(url)
    assert a.status_code == b.status_code, (a.text, b.text)
    assert a.headers["content-type"] == b.headers["content-type"] == "application/json"
    body_a, body_b = a.json(), b.json()
    for key in VOLATILE:
        assert (key in body_a) == (key in body_b)
        body_a.pop(key, None), body_b.pop(key, None)
    assert body_a == body_b
    if a.status_code == 422:
        assert body_a["error"]["code"] == "invalid_request"
    elif a.status_code == 200:
        assert body_a["user_id"] == (
            "u0000%31" if "%25" in url else url.split("/")[3].split("?")[0]
        )


class _Failing:
    async def recommend(self, req: object) -> object:
        raise RuntimeError("scoring exploded")


async def test_an_unexpected_error_is_answered_by_the_full_app() -> None:
    """Nothing is sent before the answer exists, so the app behind answers instead (no bare 500)."""
    handed: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        handed.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    before = _degraded("fast_path")
    fast = FastPath(app, cast(Recommender, _Failing()), cors=False)
    scope = {"type": "http", "method": "GET", "path": "/v1/recommendations/u1",
             "query_string": b"", "headers": []}  # fmt: skip
    await fast(scope, receive, send)  # type: ignore[arg-type]
    assert handed == ["/v1/recommendations/u1"]
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 200
    assert _degraded("fast_path") == before + 1


def _degraded(dependency: str) -> float:
    value = REGISTRY.get_sample_value(
        "streamrec_recommender_degraded_total", {"dependency": dependency}
    )
    return value or 0.0
