"""The catalogue as seen by one model: which serving items are blocked, which are in a category.

Pure: built from a ``ServingModel``'s item ids and the in-memory ``CatalogMirror`` (unavailable
ids, categories). Rebuilt when either changes; the unavailable mask is cheap to rebuild (the set
is small), the category index only when categories or the model change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from streamrec_recommender.serving.model import ServingModel
from streamrec_recommender.serving.ranking import ItemFilter, Ranked

ALLOWED_MASKS = 64
"""Category masks an index keeps (n bytes each) before it starts afresh."""


@dataclass(frozen=True, eq=False)
class CatalogIndex:
    """blocked (n,) bool over the model's serving items (True = never recommend), blocked_idx
    its flatnonzero (b,) int64;
    category_items: category -> item indices (n_c,) int64 sorted; item_category (n,) int32 code
    into ``category_names`` (-1 unknown); base_filter: the filter of a request that excludes
    nothing of its own (blocked items only)."""

    model_version: int
    unavailable_version: int
    categories_revision: int
    blocked: NDArray[np.bool_]
    blocked_idx: NDArray[np.int64]
    category_items: Mapping[str, NDArray[np.int64]]
    category_names: tuple[str, ...]
    item_category: NDArray[np.int32]
    base_filter: ItemFilter
    _allowed: dict[str, NDArray[np.bool_]] = field(default_factory=dict, repr=False)

    def allowed_for(self, category: str) -> NDArray[np.bool_]:
        """(n,) bool read-only mask of the category's items (all False for an unknown
        category); built once per category, not per request."""
        mask = self._allowed.get(category)
        if mask is not None:
            return mask
        mask = np.zeros(self.blocked.shape[0], dtype=np.bool_)
        items = self.category_items.get(category)
        if items is not None:
            mask[items] = True
            if len(self._allowed) >= ALLOWED_MASKS:
                self._allowed.clear()
            self._allowed[category] = mask
        mask.flags.writeable = False
        return mask

    def fits(self, model: ServingModel) -> bool:
        """Built for this model's item space (same version and items: a model extended by
        new products keeps its version, not its size)."""
        return self.model_version == model.version and self.blocked.shape[0] == model.n_items

    def category_of(self, index: int) -> str | None:
        code = int(self.item_category[index]) if 0 <= index < self.item_category.shape[0] else -1
        return self.category_names[code] if code >= 0 else None


def blocked_mask(model: ServingModel, unavailable: frozenset[str]) -> NDArray[np.bool_]:
    """(n,) bool: serving items whose product is inactive or out of stock."""
    mask = np.zeros(model.n_items, dtype=np.bool_)
    idx = model.indices(sorted(unavailable))
    if idx.size:
        mask[idx] = True
    return mask


def category_index(
    model: ServingModel, categories: Mapping[str, str]
) -> tuple[dict[str, NDArray[np.int64]], tuple[str, ...], NDArray[np.int32]]:
    """Group serving items by category (from the live catalogue, else the model's popular lists).

    Returns (category -> indices (n_c,) int64, category names, item codes (n,) int32).
    """
    names: dict[str, int] = {}
    codes = np.full(model.n_items, -1, dtype=np.int32)
    if categories:
        for i, pid in enumerate(model.item_ids.tolist()):
            cat = categories.get(pid)
            if cat is not None:
                codes[i] = names.setdefault(cat, len(names))
    else:
        for cat, ranked in model.popular_by_category.items():
            code = names.setdefault(cat, len(names))
            codes[ranked.indices] = code
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    groups: dict[str, NDArray[np.int64]] = {}
    for cat, code in names.items():
        lo, hi = np.searchsorted(sorted_codes, [code, code + 1])
        groups[cat] = np.sort(order[lo:hi]).astype(np.int64)
    return groups, tuple(names), codes


def build(
    model: ServingModel,
    unavailable: frozenset[str],
    unavailable_version: int,
    categories: Mapping[str, str],
    categories_revision: int,
    previous: CatalogIndex | None = None,
) -> CatalogIndex:
    """A catalog index for ``model``; reuses ``previous``'s category index when still valid."""
    if (
        previous is not None
        and previous.fits(model)
        and previous.categories_revision == categories_revision
    ):
        groups, names, codes = (
            dict(previous.category_items),
            previous.category_names,
            previous.item_category,
        )
    else:
        groups, names, codes = category_index(model, categories)
    blocked = blocked_mask(model, unavailable)
    blocked_idx = np.flatnonzero(blocked).astype(np.int64)
    return CatalogIndex(
        model_version=model.version,
        unavailable_version=unavailable_version,
        categories_revision=categories_revision,
        blocked=blocked,
        blocked_idx=blocked_idx,
        category_items=groups,
        category_names=names,
        item_category=codes,
        base_filter=ItemFilter.build(blocked=blocked, blocked_idx=blocked_idx),
    )


def popular_in(model: ServingModel, category: str | None) -> Ranked:
    """The model's own popularity list, global or of one category."""
    if category is None:
        return model.popular
    return model.popular_by_category.get(category, Ranked.empty())
