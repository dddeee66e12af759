"""The recommendations request, defined once: the FastAPI route and the fast path both use it.

``RecommendationQuery`` is the query of ``GET /v1/recommendations/{user_id}`` (FastAPI reads
it as a query-parameter model, so the OpenAPI document lists its fields); ``parse`` is the
fast path's reading of the same request: the same model validates the same strings, and
anything it rejects is left to the route, which answers the 422. The accepted ``algorithm``
values come from ``streamrec_shared.algorithms.REGISTRY`` when a request is validated.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from streamrec_recommender.serving.context import Request
from streamrec_shared.algorithms import AUTO, REGISTRY

PREFIX = "/v1/recommendations/"
ROUTE = "/v1/recommendations/{user_id}"
USER_ID_MAX = 128
MAX_CONTEXT = 20


def _algorithm(value: str) -> str:
    if value not in REGISTRY.accepted:
        raise ValueError(f"one of {', '.join((AUTO, *REGISTRY.served))}")
    return value


def _algorithm_schema(schema: dict[str, Any]) -> None:
    schema["enum"] = [AUTO, *REGISTRY.served]


AlgorithmName = Annotated[
    str,
    AfterValidator(_algorithm),
    Field(description="auto or a served algorithm", json_schema_extra=_algorithm_schema),
]
"""An ``algorithm=`` value: ``auto`` or a name the registry serves."""


class RecommendationQuery(BaseModel):
    """Query parameters of ``GET /v1/recommendations/{user_id}``; unknown ones are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    k: int = Field(default=10, ge=1, le=100, description="number of items, 1..100")
    algorithm: AlgorithmName = "auto"
    category: str | None = Field(default=None, max_length=128)
    exclude: str | None = Field(
        default=None, max_length=8192, description="product ids not to show, comma-separated"
    )
    context: str | None = Field(
        default=None,
        max_length=4096,
        description=(
            "product ids on the shopper's screen or in the cart, comma-separated, most recent "
            f"first (at most {MAX_CONTEXT} used): the session's latest items"
        ),
    )
    include_seen: bool | None = Field(
        default=None,
        description="show items the user already had (true) or not (false); default: the "
        "rule the trainer measured and published with the model (exclude, downweight, keep)",
    )

    def to_request(self, user_id: str) -> Request:
        return Request(
            user_id, self.k, self.algorithm, self.category or None, excluded(self.exclude),
            excluded(self.context)[:MAX_CONTEXT], self.include_seen,
        )  # fmt: skip


def excluded(raw: str | None) -> tuple[str, ...]:
    """``exclude=a, b,,c`` -> ("a", "b", "c") (also reads ``context=``)."""
    if not raw:
        return ()
    return tuple(p for p in (s.strip() for s in raw.split(",")) if p)


def user_of(path: str) -> str | None:
    """The user id of a recommendations path, percent-decoded once (as the ASGI server gives
    it and the route sees it); None when the route would not match or validate it."""
    user_id = path[len(PREFIX) :]
    if not 1 <= len(user_id) <= USER_ID_MAX or "/" in user_id:
        return None
    return user_id


def read_query(raw: bytes) -> RecommendationQuery | None:
    """A raw query string read as Starlette reads it (latin-1, then percent-decoding as UTF-8,
    the last of repeated names) and validated by ``RecommendationQuery``; None when invalid."""
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True) if raw else ()
    try:
        return RecommendationQuery.model_validate(dict(pairs))
    except ValidationError:
        return None


def parse(path: str, query: bytes) -> Request | None:
    """The request of a ``GET`` of ``path`` with the raw ``query``; None when it is not a valid
    recommendations call (the route then answers, e.g. the 422)."""
    user_id = user_of(path)
    found = read_query(query) if user_id is not None else None
    return found.to_request(user_id) if found is not None and user_id is not None else None
