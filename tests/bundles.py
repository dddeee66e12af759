"""Model bundles for tests: small hand-made ones for tests of artifacts and exports, and the
one way a stack test puts a model in service without training (a realistic synthetic bundle:
``streamrec_dev.synthetic_model.make_bundle``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

from streamrec_client import AsyncStreamrecClient
from streamrec_client.models import Recommendations
from streamrec_dev.localstack.stack import StackDescription
from streamrec_dev.synthetic_model import activate, next_version
from streamrec_shared.artifacts import AlsArrays, DataWindow, ModelBundle, TopNArrays

from .polling import eventually


def tiny_bundle(
    *,
    version: int,
    item_ids: Sequence[str],
    user_ids: Sequence[str],
    topn_users: Sequence[str],
    topn_items: Sequence[Sequence[int]],
    topn_scores: Sequence[Sequence[float]],
    dim: int = 2,
    seed: int = 0,
    created_at: datetime = datetime(2026, 2, 1, tzinfo=UTC),
    window: tuple[float, float] = (0, 1),
    alpha: float = 1.0,
    metrics: dict[str, float] | None = None,
) -> ModelBundle:
    """ALS factors drawn from ``seed`` (items x dim, users x dim) and the given top-n lists."""
    rng = np.random.default_rng(seed)
    return ModelBundle(
        version=version,
        created_at=created_at,
        data_window=DataWindow.from_timestamps(*window),
        als=AlsArrays(
            item_ids=np.array(item_ids),
            user_ids=np.array(user_ids),
            item_factors=rng.normal(size=(len(item_ids), dim)).astype(np.float32),
            user_factors=rng.normal(size=(len(user_ids), dim)).astype(np.float32),
            regularization=0.1,
            alpha=alpha,
        ),
        topn=TopNArrays(
            user_ids=np.array(topn_users), items=np.array(topn_items), scores=np.array(topn_scores)
        ),
        metrics=metrics or {},
    )


async def activate_new(
    stack: StackDescription, build: Callable[[int], ModelBundle]
) -> tuple[Path, int]:
    """``build(version)`` for the next free version, saved under the stack's artifact root as
    ``v<version>``, registered as the active version and announced; returns (directory, version).
    """
    version = await next_version(stack.postgres_dsn)
    directory = Path(stack.artifacts_uri.removeprefix("file://")) / f"v{version}"
    await asyncio.to_thread(lambda: build(version).save(directory))
    await activate(
        directory, version, postgres_dsn=stack.postgres_dsn, kafka_bootstrap=stack.kafka_bootstrap
    )
    return directory, version


FRESH_PROBES = 12
"""Fresh connections that must all see the version. The recommender runs several workers (one
port, SO_REUSEPORT spreads connections among them) and each loads an announced model on its
own; a kept-alive connection stays with one worker, so one answer does not say the others have
the model yet. Twelve fresh connections all missing one of two workers: p = 2^-12."""


async def wait_served(
    client: AsyncStreamrecClient,
    version: int | None = None,
    *,
    algorithm: str | None = None,
    timeout: float = 60,
) -> int:
    """Wait until the recommender answers ``u0000001`` from model ``version`` (from any model
    when None, with ``algorithm`` when given) on every worker; returns the version that serves."""
    params: dict[str, str | int] = (
        {"k": 5} if algorithm is None else {"k": 5, "algorithm": algorithm}
    )
    url = f"{client.urls['recommender']}/v1/recommendations/u0000001"

    async def fresh_answer() -> int | None:
        async with httpx.AsyncClient(headers=client.headers, timeout=10) as fresh:
            response = await fresh.get(url, params=params)
        return response.json()["model_version"] if response.status_code == 200 else None

    async def serving() -> int | None:
        seen = {await fresh_answer() for _ in range(FRESH_PROBES)}
        served = seen.pop() if len(seen) == 1 else None
        return served if version is None or served == version else None

    served = await eventually(serving, timeout=timeout, what=f"model {version or 'any'} to serve")
    assert served is not None
    return served


async def cold_user(
    client: AsyncStreamrecClient, prefix: str, k: int
) -> tuple[str, Recommendations]:
    """A user id no test used before (``<prefix>-<random>``) and its first answer, which must
    come from the cold-start tier."""
    user = f"{prefix}-{uuid.uuid4().hex[:10]}"
    first = await client.recommendations(user, k=k)
    assert "cold_start" in first["strategy"], first
    return user, first
