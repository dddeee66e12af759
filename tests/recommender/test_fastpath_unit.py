"""The lean path answers only ordinary, valid requests; everything else goes to FastAPI."""

from __future__ import annotations

from streamrec_recommender.fastpath import parse


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
