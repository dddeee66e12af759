"""New products in the serving item space before any retrain: the trainer's content map applied.

The trainer ships, with every model, how to place any product in the ALS factor space from its
content alone (``streamrec_shared.artifacts.ContentArrays``: the featuriser's vocabulary and
text idf, the ridge map ``projection`` and its bias). ``ContentMap`` is that recipe on the
serving side (the featuriser is the trainer's own, ``streamrec_shared.content.ContentSpace``;
``tests/recommender/test_newitems_unit.py`` checks the factors agree). ``extend`` returns a
new immutable ``ServingModel`` with the products appended to its item space (factors,
content rows, exact scorer), swapped in like a model: ``/similar``, content and hybrid
answers and the cold-start fill find them at once; ``ServingModel.live_items`` names them, so
answers that show one say so in their ``strategy`` (``...:new_product``).

Pure: numpy only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from streamrec_recommender.serving.model import ServingModel
from streamrec_recommender.serving.ranking import ExactScorer, ItemFilter, Ranked
from streamrec_shared.content import FEATURIZER_NAME, ContentSpace

NEW_PRODUCT = "new_product"
"""Suffix of the ``strategy`` of an answer that shows a product added since the model."""
LIVE_SIMILAR_MIN = 0.5
"""Content cosine from which a product added since the model counts as similar (``/similar``)."""


@dataclass(frozen=True)
class Product:
    """What the content map reads of a product (a ``catalog.v1`` record)."""

    product_id: str
    name: str
    category: str
    price: float
    attributes: Mapping[str, Any]
    description: str = ""
    active: bool = True

    @property
    def text(self) -> str:
        return " ".join(s for s in (self.name, self.description) if s).strip()


@dataclass(frozen=True)
class ContentMap:
    """The featuriser described by a bundle's ``content_vocabulary`` plus the ridge map:
    projection (n_features, f) float32, bias (f,) float32."""

    space: ContentSpace
    projection: NDArray[np.float32]
    bias: NDArray[np.float32]

    @classmethod
    def from_arrays(
        cls,
        vocabulary: Mapping[str, Any],
        text_idf: NDArray[np.float32],
        projection: NDArray[np.float32],
        bias: NDArray[np.float32],
    ) -> ContentMap | None:
        """None when the vocabulary is of another featuriser (nothing to apply)."""
        if vocabulary.get("featurizer") != FEATURIZER_NAME:
            return None
        return cls(
            space=ContentSpace(**ContentSpace.fields_of(vocabulary, text_idf)),
            projection=np.asarray(projection, dtype=np.float32),
            bias=np.asarray(bias, dtype=np.float32),
        )

    def vector(self, product: Product) -> dict[int, float]:
        """The sparse content vector (feature -> value), L2-normalised; empty when nothing
        of the product is known to the vocabulary."""
        return self.space.vector(
            product.category, float(product.price), product.attributes, product.text
        )

    def factor(self, product: Product) -> NDArray[np.float32] | None:
        """The product's ALS-space factor (f,) float32 (``vector @ projection + bias``), or
        None when its content says nothing the vocabulary knows."""
        vec = self.vector(product)
        if not vec:
            return None
        idx = np.fromiter(vec.keys(), dtype=np.int64)
        val = np.fromiter(vec.values(), dtype=np.float32)
        out = val @ self.projection[idx] + self.bias
        return np.ascontiguousarray(out, dtype=np.float32)


def extend(
    model: ServingModel, products: Sequence[Product], content_map: ContentMap
) -> ServingModel:
    """``model`` with the products it does not know appended to its item space (a new
    immutable model, same version). Products the map cannot place are left out."""
    rows: list[tuple[str, NDArray[np.float32]]] = []
    seen: set[str] = set()
    for p in products:
        if p.product_id in model.index_of or p.product_id in seen or not p.active:
            continue
        f = content_map.factor(p)
        if f is not None and f.shape[0] == model.dim and np.all(np.isfinite(f)):
            rows.append((p.product_id, f))
            seen.add(p.product_id)
    if not rows:
        return model
    n = model.n_items
    new_ids = np.asarray([pid for pid, _ in rows], dtype=np.str_)
    new_f = np.stack([f for _, f in rows]).astype(np.float32)
    item_ids = np.concatenate([model.item_ids, new_ids])
    item_factors = np.ascontiguousarray(np.concatenate([model.item_factors, new_f]))
    index_of = dict(model.index_of)
    for offset, (pid, _) in enumerate(rows):
        index_of[pid] = n + offset
    normed = (new_f / np.maximum(np.linalg.norm(new_f, axis=1, keepdims=True), 1e-12)).astype(
        np.float32
    )
    if model.content_factors is not None and model.content_rows is not None:
        base = model.content_factors.shape[0]
        content_factors = np.concatenate([model.content_factors, normed])
        content_rows = np.concatenate(
            [model.content_rows, np.arange(base, base + len(rows), dtype=np.int64)]
        )
        old_index = (
            model.content_index if model.content_index is not None else np.empty(0, dtype=np.int64)
        )
        content_index = np.concatenate([old_index, np.arange(n, n + len(rows), dtype=np.int64)])
    else:
        content_factors = normed
        content_rows = np.concatenate(
            [np.full(n, -1, dtype=np.int64), np.arange(len(rows), dtype=np.int64)]
        )
        content_index = np.arange(n, n + len(rows), dtype=np.int64)
    return dataclasses.replace(
        model,
        item_ids=item_ids,
        index_of=index_of,
        item_factors=item_factors,
        content_rows=content_rows,
        content_factors=np.ascontiguousarray(content_factors),
        content_index=content_index,
        exact=ExactScorer.build(item_factors) if model.ann is None else model.exact,
        live_items=frozenset(model.live_items | seen),
    )


def similar_live(
    model: ServingModel, i: int, k: int, blocked: NDArray[np.bool_] | None = None
) -> list[tuple[int, float]]:
    """Products added since the model whose content is close to item ``i``'s (cosine >=
    ``LIVE_SIMILAR_MIN``), best first, at most half of ``k`` (at least one): serving indices
    and cosines. They have no neighbours of their own in the model's item-kNN lists."""
    rows, factors = model.content_rows, model.content_factors
    if not model.live_items or rows is None or factors is None or rows[i] < 0:
        return []
    idx = np.fromiter((model.index_of[p] for p in model.live_items), dtype=np.int64)
    idx = idx[(idx != i) & (rows[idx] >= 0)]
    if blocked is not None and blocked.shape[0] == model.n_items:
        idx = idx[~blocked[idx]]
    if idx.size == 0:
        return []
    sims = factors[rows[idx]] @ factors[rows[i]]
    keep = sims >= LIVE_SIMILAR_MIN
    idx, sims = idx[keep], sims[keep]
    order = np.argsort(-sims, kind="stable")[: max(1, k // 2)]
    return [(int(idx[o]), float(sims[o])) for o in order]


def content_neighbours(model: ServingModel, i: int, c: int) -> Ranked:
    """The ``c`` items nearest to item ``i`` by content cosine (``i`` itself included; empty
    without content rows): how a product added since the model finds its similar products."""
    rows, factors, index = model.content_rows, model.content_factors, model.content_index
    if rows is None or factors is None or index is None or rows[i] < 0:
        return Ranked.empty()
    if model.content_scan is not None:
        return model.content_scan.top(factors[rows[i]], c, ItemFilter(), factors, index)
    sims = factors @ factors[rows[i]]
    top = np.argsort(-sims, kind="stable")[:c]
    return Ranked.of(index[top], sims[top].astype(np.float32))
