"""Small hand-made model bundles for tests of artifacts and exports (a realistic synthetic one:
``streamrec_dev.synthetic_model.make_bundle``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from streamrec_shared.artifacts import AlsArrays, DataWindow, ModelBundle, TopNArrays


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
