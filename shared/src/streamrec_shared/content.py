"""The content featuriser a bundle's ``content_vocabulary`` describes: product -> sparse vector.

One definition for both sides: the trainer fits it (``streamrec_trainer.models.content``) and the
recommender places products that arrived after the model with it
(``streamrec_recommender.serving.newitems``). Vector layout, each block L2-normalised and scaled
by its block weight, the whole vector L2-normalised again::

    [ category one-hot | price band one-hot | hashed attributes | hashed text tf-idf ]

* category: the categories seen at fit time; an unseen category contributes nothing.
* price band: bands of log(price) cut at ``price_edges``.
* attributes: ``key=value`` tokens (lower-cased), hashed with crc32 into ``attribute_buckets``.
* text: lower-cased ``token_pattern`` tokens (length >= 2) of name + description, hashed with
  crc32 into ``text_buckets``, weight ``(1 + log tf) * idf``.

crc32 (not Python's salted ``hash``) keeps the hashing identical across processes.

Pure: numpy only.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

FEATURIZER_NAME = "streamrec-content-v1"
TOKEN_PATTERN = "[a-z0-9]+"  # noqa: S105 (a regular expression)


def bucket(token: str, buckets: int) -> int:
    """crc32 of the UTF-8 token modulo ``buckets``."""
    return zlib.crc32(token.encode("utf-8")) % buckets


def tokens(text: str, token_re: re.Pattern[str] = re.compile(TOKEN_PATTERN)) -> list[str]:
    """Lower-cased tokens of length >= 2."""
    return [t for t in token_re.findall(text.lower()) if len(t) >= 2]


@dataclass(frozen=True)
class ContentSpace:
    """A fitted featuriser, fully described by ``vocabulary()`` and ``text_idf``
    (n_text_buckets,) float32."""

    categories: tuple[str, ...]
    price_edges: tuple[float, ...]
    attribute_buckets: int
    text_buckets: int
    block_weights: Mapping[str, float]
    text_idf: NDArray[np.float32] = field(repr=False)
    token_pattern: str = TOKEN_PATTERN

    @cached_property
    def offsets(self) -> dict[str, int]:
        n_bands = len(self.price_edges) + 1
        cat = 0
        price = cat + len(self.categories)
        attr = price + n_bands
        text = attr + self.attribute_buckets
        return {
            "category": cat,
            "price": price,
            "attribute": attr,
            "text": text,
            "end": text + self.text_buckets,
        }

    @property
    def n_features(self) -> int:
        return self.offsets["end"]

    @cached_property
    def _category_index(self) -> dict[str, int]:
        return {c: k for k, c in enumerate(self.categories)}

    @cached_property
    def _edges(self) -> NDArray[np.float64]:
        return np.asarray(self.price_edges, dtype=np.float64)

    @cached_property
    def _token_re(self) -> re.Pattern[str]:
        return re.compile(self.token_pattern)

    def vocabulary(self) -> dict[str, Any]:
        """JSON-able description (goes into the manifest's ``content_vocabulary``)."""
        return {
            "featurizer": FEATURIZER_NAME,
            "categories": list(self.categories),
            "price_edges": list(self.price_edges),
            "price_scale": "log",
            "attribute_buckets": self.attribute_buckets,
            "text_buckets": self.text_buckets,
            "hash": "crc32(utf-8) mod buckets",
            "token_pattern": self.token_pattern,
            "block_weights": dict(self.block_weights),
            "offsets": self.offsets,
            "n_features": self.n_features,
        }

    @staticmethod
    def fields_of(vocabulary: Mapping[str, Any], text_idf: ArrayLike) -> dict[str, Any]:
        """The constructor's arguments from a ``vocabulary()`` (ValueError when it is another
        featuriser's)."""
        if vocabulary.get("featurizer") != FEATURIZER_NAME:
            raise ValueError(f"unsupported featurizer {vocabulary.get('featurizer')!r}")
        return {
            "categories": tuple(str(c) for c in vocabulary["categories"]),
            "price_edges": tuple(float(x) for x in vocabulary["price_edges"]),
            "attribute_buckets": int(vocabulary["attribute_buckets"]),
            "text_buckets": int(vocabulary["text_buckets"]),
            "block_weights": {str(k): float(v) for k, v in vocabulary["block_weights"].items()},
            "text_idf": np.asarray(text_idf, dtype=np.float32),
            "token_pattern": str(vocabulary.get("token_pattern", TOKEN_PATTERN)),
        }

    def tokens(self, text: str) -> list[str]:
        return tokens(text, self._token_re)

    def row(
        self, category: str, price: float, attributes: Mapping[str, Any], text: str
    ) -> dict[int, float]:
        """The product's features (feature -> value), blocks weighted, not yet normalised."""
        off = self.offsets
        blocks: list[tuple[str, dict[int, float]]] = []
        if category in self._category_index:
            blocks.append(("category", {off["category"] + self._category_index[category]: 1.0}))
        if math.isfinite(price) and price > 0:
            band = int(np.searchsorted(self._edges, math.log(price), "right"))
            blocks.append(("price", {off["price"] + band: 1.0}))
        attr: Counter[int] = Counter(
            off["attribute"] + bucket(f"{k}={v}".lower(), self.attribute_buckets)
            for k, v in attributes.items()
        )
        blocks.append(("attribute", {k: float(v) for k, v in attr.items()}))
        tf: Counter[int] = Counter(bucket(t, self.text_buckets) for t in self.tokens(text))
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
        return row

    def vector(
        self, category: str, price: float, attributes: Mapping[str, Any], text: str
    ) -> dict[int, float]:
        """``row`` L2-normalised; empty when nothing of the product is known to the vocabulary."""
        row = self.row(category, price, attributes, text)
        norm = math.sqrt(sum(v * v for v in row.values()))
        return {k: v / norm for k, v in row.items()} if norm > 0 else {}
