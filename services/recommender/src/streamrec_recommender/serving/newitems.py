"""New products in the serving item space before any retrain: the trainer's content map applied.

The trainer ships, with every model, how to place any product in the ALS factor space from its
content alone (``streamrec_shared.artifacts.ContentArrays``: the featuriser's vocabulary and
text idf, the ridge map ``projection`` and its bias). ``ContentMap`` is that recipe on the
serving side (the same vector as ``streamrec_trainer.models.content.ContentFeaturizer``, checked
by ``tests/recommender/test_newitems_unit.py``); ``extend`` returns a new immutable
``ServingModel`` with the products appended to its item space (factors, content rows, exact
scorer), swapped in like a model: ``/similar``, content and hybrid answers and the cold-start
fill find them at once; ``ServingModel.live_items`` names them, so answers that show one say
so in their ``strategy`` (``...:new_product``).

Pure: numpy only.
"""

from __future__ import annotations

import dataclasses
import math
import re
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from streamrec_recommender.serving.model import ServingModel
from streamrec_recommender.serving.ranking import ExactScorer, Ranked

FEATURIZER_NAME = "streamrec-content-v1"
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


def _bucket(token: str, buckets: int) -> int:
    return zlib.crc32(token.encode("utf-8")) % buckets


@dataclass(frozen=True)
class ContentMap:
    """The featuriser described by a bundle's ``content_vocabulary`` plus the ridge map."""

    categories: Mapping[str, int]
    price_edges: NDArray[np.float64]
    attribute_buckets: int
    text_buckets: int
    block_weights: Mapping[str, float]
    offsets: Mapping[str, int]
    token_re: re.Pattern[str]
    text_idf: NDArray[np.float32]
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
        cats = [str(c) for c in vocabulary.get("categories", ())]
        return cls(
            categories={c: k for k, c in enumerate(cats)},
            price_edges=np.asarray(vocabulary.get("price_edges", ()), dtype=np.float64),
            attribute_buckets=int(vocabulary["attribute_buckets"]),
            text_buckets=int(vocabulary["text_buckets"]),
            block_weights={str(k): float(v) for k, v in vocabulary["block_weights"].items()},
            offsets={str(k): int(v) for k, v in vocabulary["offsets"].items()},
            token_re=re.compile(str(vocabulary.get("token_pattern", "[a-z0-9]+"))),
            text_idf=np.asarray(text_idf, dtype=np.float32),
            projection=np.asarray(projection, dtype=np.float32),
            bias=np.asarray(bias, dtype=np.float32),
        )

    def tokens(self, text: str) -> list[str]:
        return [t for t in self.token_re.findall(text.lower()) if len(t) >= 2]

    def vector(self, product: Product) -> dict[int, float]:
        """The sparse content vector (feature -> value), L2-normalised; empty when nothing
        of the product is known to the vocabulary."""
        off = self.offsets
        blocks: list[tuple[str, dict[int, float]]] = []
        if product.category in self.categories:
            blocks.append(("category", {off["category"] + self.categories[product.category]: 1.0}))
        price = float(product.price)
        if math.isfinite(price) and price > 0:
            band = int(np.searchsorted(self.price_edges, math.log(price), "right"))
            blocks.append(("price", {off["price"] + band: 1.0}))
        attr: Counter[int] = Counter(
            off["attribute"] + _bucket(f"{k}={v}".lower(), self.attribute_buckets)
            for k, v in ((str(k), str(v)) for k, v in product.attributes.items())
        )
        blocks.append(("attribute", {k: float(v) for k, v in attr.items()}))
        tf: Counter[int] = Counter(_bucket(t, self.text_buckets) for t in self.tokens(product.text))
        blocks.append(
            (
                "text",
                {
                    off["text"] + b: (1.0 + math.log(c)) * float(self.text_idf[b])
                    for b, c in tf.items()
                },
            )
        )
        row: dict[int, float] = {}
        for name, block in blocks:
            norm = math.sqrt(sum(v * v for v in block.values()))
            if norm > 0:
                scale = self.block_weights.get(name, 0.0) / norm
                for k, v in block.items():
                    row[k] = row.get(k, 0.0) + v * scale
        norm = math.sqrt(sum(v * v for v in row.values()))
        return {k: v / norm for k, v in row.items()} if norm > 0 else {}

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
    sims = factors @ factors[rows[i]]
    top = np.argsort(-sims, kind="stable")[:c]
    return Ranked.of(index[top], sims[top].astype(np.float32))
