"""One model version prepared for serving: the immutable state every scorer reads.

Built by ``streamrec_recommender.runtime.model_handle.prepare`` from an artifact bundle; this
module only defines its shape (pure: numpy, no I/O), so the serving layer can be read and
tested without the runtime.

Serving item space
    Rows ``0 .. n_trained-1`` are the ALS items (``als.npz`` order); the rows after them are
    catalogue products known only to the content model (no interaction at training time),
    placed in the ALS space by the content projection. That is how a new product can be
    recommended before anybody touched it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from streamrec_recommender.serving.quantised import QuantisedScan
from streamrec_recommender.serving.ranking import ExactScorer, Ranked
from streamrec_shared import factors

if TYPE_CHECKING:
    from streamrec_recommender.serving.newitems import ContentMap


class VectorIndex(Protocol):
    """An approximate nearest-neighbour index over the item factors (``runtime.index``)."""

    @property
    def recall(self) -> float: ...

    def search(self, query: NDArray[np.float32], c: int) -> Ranked:
        """About the best ``c`` items by inner product with a query (f,) float32."""
        ...


SEEN_MODES = ("exclude", "downweight", "keep")


@dataclass(frozen=True)
class SeenRule:
    """What to do with items the user already had, as the trainer measured it
    (``streamrec_trainer.repeats``, ``ModelBundle.extra["seen_rule"]``): ``exclude`` never
    shows them, ``downweight`` scales their scores down by ``factor``, ``keep`` ranks them like
    any item. ``share``: the measured share of interactions on items the user had."""

    mode: str
    factor: float = 0.0
    share: float | None = None
    purchased_mode: str = "exclude"
    """The same for items the user bought (measured on re-purchases)."""
    purchased_factor: float = 0.0

    @classmethod
    def from_extra(cls, raw: Any) -> SeenRule | None:
        """The rule of a bundle's ``extra["seen_rule"]``; None when absent or unreadable (older
        bundles: the recommender's default handling of purchases applies). Without a
        ``purchased`` part bought items are excluded."""
        if not isinstance(raw, Mapping) or raw.get("mode") not in SEEN_MODES:
            return None
        bought = raw.get("purchased")
        if not isinstance(bought, Mapping) or bought.get("mode") not in SEEN_MODES:
            bought = {"mode": "exclude", "factor": 0.0}
        share = raw.get("share")
        return cls(
            str(raw["mode"]),
            _number(raw.get("factor")),
            float(share) if isinstance(share, int | float) else None,
            str(bought["mode"]),
            _number(bought.get("factor")),
        )


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


@dataclass(frozen=True, eq=False)
class ServingModel:
    """One model version prepared for serving (immutable).

    item_ids (n,) U serving item space; item_factors (n, f) float32 C-contiguous, rows follow
    item_ids; user_factors (n_users, f) float32 rows follow ``user_index``; yty (f, f) float64
    gram of the trained rows (for fold-in). neighbours / neighbour_sims (n_trained, N) int32 /
    float32 item-kNN lists (-1 = none). content_rows (n,) int64: row of each serving item in
    content_factors (n_content, f) float32, the content model's ALS-space factors L2-normalised
    (-1 = no content vector); content_index (n_content,) int64 the inverse map.
    popular: model popularity over serving indices; popular_by_category: category -> Ranked.
    Exactly one of ``ann`` (above ``exact_max_items``) and ``exact`` (the norm-sorted copy of
    the item factors for exact top-k) is set by ``runtime.model_handle.prepare``;
    content_scan (the int8 copy of the first rows of content_factors for exact top-k) only
    in the exact regime for catalogues of ``content_scan_min_items`` content vectors or more.
    """

    version: int
    created_at: datetime
    item_ids: NDArray[np.str_]
    index_of: Mapping[str, int]
    item_factors: NDArray[np.float32]
    n_trained: int
    user_index: Mapping[str, int]
    user_factors: NDArray[np.float32]
    regularization: float
    alpha: float
    yty: NDArray[np.float64]
    neighbours: NDArray[np.int32] | None
    neighbour_sims: NDArray[np.float32] | None
    content_rows: NDArray[np.int64] | None
    content_factors: NDArray[np.float32] | None
    content_index: NDArray[np.int64] | None
    popular: Ranked
    popular_by_category: Mapping[str, Ranked]
    ann: VectorIndex | None = None
    exact: ExactScorer | None = None
    content_scan: QuantisedScan | None = None
    algorithms: tuple[str, ...] = ()
    load_seconds: float = 0.0
    arrays: Mapping[str, Mapping[str, NDArray[Any]]] = field(default_factory=dict)
    """Further arrays of the bundle by file stem (``ModelBundle.extra_files``): where a
    plug-in algorithm finds what its trainer module shipped."""
    offline_metrics: Mapping[str, Any] = field(default_factory=dict)
    """The bundle's ``metrics`` (the trainer's holdout evaluation): the ``auto`` bandit's priors
    (``serving.policy.offline_priors``)."""
    content_map: ContentMap | None = None
    """The bundle's content-to-factor map (``serving.newitems``): places a product that
    arrives after training in this model's space."""
    live_items: frozenset[str] = frozenset()
    """Products appended since the model was loaded (``serving.newitems.extend``)."""
    seen: SeenRule | None = None
    """The seen-items rule published with this version (None: older bundles)."""
    hybrid_weights: Mapping[str, float] | None = None
    """``hybrid``'s member weights as the trainer chose them on its holdout (``popular``: the
    trending list's); None: the registry's defaults (older bundles)."""

    @property
    def n_items(self) -> int:
        return int(self.item_ids.shape[0])

    @property
    def dim(self) -> int:
        return int(self.item_factors.shape[1])

    def user_factor(self, user_id: str) -> NDArray[np.float32] | None:
        row = self.user_index.get(user_id)
        return None if row is None else self.user_factors[row]

    def indices(self, product_ids: tuple[str, ...] | list[str]) -> NDArray[np.int64]:
        """Serving indices (m,) int64 of the known ids among ``product_ids`` (order kept)."""
        get = self.index_of.get
        found = [i for i in (get(p) for p in product_ids) if i is not None]
        return np.asarray(found, dtype=np.int64)

    def fold_in(
        self, product_ids: tuple[str, ...], weights: NDArray[np.float32]
    ) -> NDArray[np.float32] | None:
        """ALS user vector (f,) float32 from weighted items (net weights > 0 only), or None."""
        rows: dict[int, float] = {}
        for pid, w in zip(product_ids, weights.tolist(), strict=False):
            i = self.index_of.get(pid)
            if i is not None and i < self.n_trained and w > 0:
                rows[i] = rows.get(i, 0.0) + float(w)
        if not rows:
            return None
        idx = np.fromiter(rows.keys(), dtype=np.int64)
        conf = factors.confidence(np.fromiter(rows.values(), dtype=np.float64), self.alpha)
        return factors.fold_in(
            self.item_factors[: self.n_trained], idx, conf, self.regularization, yty=self.yty
        )
