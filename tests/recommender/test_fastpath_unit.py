"""The lean path answers only ordinary, valid requests; everything else goes to FastAPI."""

from __future__ import annotations

from typing import cast

from prometheus_client import REGISTRY
from starlette.types import Receive, Scope, Send

from streamrec_recommender.api.fastpath import FastPath, parse
from streamrec_recommender.runtime.recommender import Recommender


def test_parse_accepts_ordinary_requests() -> None:
    req = parse("/v1/recommendations/u%201", b"k=5&algorithm=als&category=&exclude=a,%20b,,")
    assert req is not None
    assert (req.user_id, req.k, req.algorithm, req.category) == ("u 1", 5, "als", None)
    assert req.exclude == ("a", "b")
    default = parse("/v1/recommendations/x", b"")
    assert default is not None
    assert (default.k, default.algorithm) == (10, "auto")


def test_parse_defers_anything_unusual() -> None:
    for path, query in [
        ("/v1/recommendations/", b""),
        ("/v1/recommendations/a/b", b""),
        ("/v1/recommendations/x", b"k=0"),
        ("/v1/recommendations/x", b"k=101"),
        ("/v1/recommendations/x", b"k=-1"),
        ("/v1/recommendations/x", b"k=ten"),
        ("/v1/recommendations/x", b"algorithm=magic"),
        ("/v1/recommendations/x", b"unknown=1"),
        ("/v1/recommendations/" + "u" * 129, b""),
        ("/v1/recommendations/x", b"category=" + b"c" * 129),
    ]:
        assert parse(path, query) is None, (path, query)


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
