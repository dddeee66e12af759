"""The trainer's side of each algorithm, by name: fitter, parameters, bundle arrays, offline
evaluation adapters.

Every algorithm module of this package (``als.py``, ``itemknn.py``, ...) ends with one
``register(TrainerAlgorithm(...))``; ``load_builtin`` imports the package's modules, so adding
an algorithm is its module here plus its entry in ``streamrec_shared.algorithms`` (which says
whether it is trained at all). ``fit.fit_all`` fits, and ``FittedModels.to_bundle`` ships, every
trained algorithm of the shared registry in its order; ``offline`` evaluates every adapter.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from streamrec_shared.algorithms import REGISTRY, Plugins
from streamrec_trainer.dataset import Catalog, Dataset, InteractionMatrix, build_matrix
from streamrec_trainer.models.base import Scorer

if TYPE_CHECKING:
    from streamrec_trainer.evaluate import Holdout
    from streamrec_trainer.models.fit import FittedModels, TrainParams

Params = dict[str, Any]
"""One point of an offline grid (JSON-able)."""
BundlePart = Any | Mapping[str, NDArray[Any]]
"""What an algorithm ships: a typed part of ``ModelBundle`` named like the algorithm (``als``:
``AlsArrays``, ...) or, for any other algorithm, its arrays (file ``<name>.npz``, read back as
``ModelBundle.extra_files[name]``)."""


@dataclass
class Fitting:
    """What the fitters of one ``fit_all`` share: the data, its matrix (users x items, decayed
    weights), the parameters, and the models fitted so far (by name, in fitting order).

    init, iterations, exact_rows: ALS warm start and partial solve (see ``fit_all``)."""

    dataset: Dataset
    matrix: InteractionMatrix
    params: TrainParams
    models: dict[str, Any] = field(default_factory=dict)
    init: Any = None
    iterations: int | None = None
    exact_rows: NDArray[np.int64] | None = None
    _decayed: dict[float | None, sp.csr_matrix] = field(default_factory=dict, repr=False)

    @property
    def x(self) -> sp.csr_matrix:
        """csr_matrix (n_users, n_items) float32 decayed weights."""
        return self.matrix.matrix

    def x_for(self, name: str) -> sp.csr_matrix:
        """What algorithm ``name`` is fitted on: ``x``, or, when ``params.half_lives`` gives it
        a training half-life of its own, the same events on the same rows and columns decayed
        with that one (csr_matrix (n_users, n_items) float32; built once per half-life)."""
        if name not in self.params.half_lives:
            return self.x
        half_life = self.params.half_lives[name]
        if half_life == self.matrix.half_life_days:
            return self.x
        if half_life not in self._decayed:
            self._decayed[half_life] = build_matrix(
                self.dataset.interactions,
                half_life_days=half_life,
                reference_ts=self.matrix.reference_ts,
                user_ids=self.matrix.user_ids,
                item_ids=self.matrix.item_ids,
            ).matrix
        return self._decayed[half_life]


@dataclass
class OfflineContext:
    """What offline fitters share within one split: the holdout, the catalogue, threads, the
    chosen parameters of earlier algorithms and a cache of fitted models (by key)."""

    holdout: Holdout
    catalog: Catalog
    threads: int
    chosen: dict[str, Params] = field(default_factory=dict)
    """Offline name -> the parameters chosen on validation (``als`` for content_to_als)."""
    cache: dict[str, Any] = field(default_factory=dict)

    def train_matrix(self, params: Params) -> sp.csr_matrix:
        """The holdout's training part, csr_matrix (n_users, n_items) float32 net weights,
        decayed with the point's ``half_life_days``."""
        return self.holdout.matrix(half_life(params)).matrix

    def cached(self, name: str, params: Params, fit: Callable[[], Any]) -> Any:
        key = f"{name}:{json.dumps(params, sort_keys=True)}"
        if key not in self.cache:
            self.cache[key] = fit()
        return self.cache[key]


def grid(**axes: list[Any]) -> list[Params]:
    """Every combination of the axes' values (an offline grid)."""
    points: list[Params] = [{}]
    for name, values in axes.items():
        points = [{**p, name: v} for p in points for v in values]
    return points


def half_life(params: Params) -> float | None:
    value = params.get("half_life_days")
    return None if value is None else float(value)


@dataclass(frozen=True)
class OfflineAdapter:
    """One row of ``streamrec eval``: a grid of parameters and how to fit a scorer for a point.

    order: position in the report; needs: offline names whose chosen parameters it reads
    (evaluated first); scoring_half_life: the half-life its scores' user histories are decayed
    with (default: the point's own ``half_life_days``)."""

    grid: list[Params]
    fit: Callable[[OfflineContext, Params], Scorer]
    order: float = 100.0
    needs: tuple[str, ...] = ()
    scoring_half_life: Callable[[OfflineContext, Params], float | None] | None = None


@dataclass(frozen=True)
class TrainerAlgorithm:
    """name: as in ``streamrec_shared.algorithms``; params: its parameter dataclass (the
    ``TrainParams`` group of that name; None there skips the algorithm); fit: the fitted model
    (a ``Scorer``) from the shared fitting state, or None when the algorithm does not apply to
    this data (then it is neither evaluated nor shipped); after: algorithms it reads from
    ``Fitting.models``; bundle: what it ships to serving (None: nothing, offline only);
    offline: its ``streamrec eval`` rows by name."""

    name: str
    params: type
    fit: Callable[[Fitting, Any], Scorer | None]
    after: tuple[str, ...] = ()
    bundle: Callable[[Any, FittedModels], BundlePart] | None = None
    offline: Mapping[str, OfflineAdapter] = field(default_factory=dict)


_PLUGINS: Plugins[TrainerAlgorithm] = Plugins("streamrec_trainer.models")
TRAINERS = _PLUGINS.by_name
register = _PLUGINS.register
"""Fit, ship and evaluate ``algorithm.name`` this way (a plug-in's trainer side)."""
load_builtin = _PLUGINS.load_builtin
"""Import every module of this package (the algorithm modules register themselves)."""


def trained() -> list[TrainerAlgorithm]:
    """The trainer side of every trained algorithm of the shared registry, in its order."""
    load_builtin()
    missing = [n for n in REGISTRY.trained() if n not in TRAINERS]
    if missing:
        raise LookupError(f"algorithms {missing} have no trainer module registered")
    return [TRAINERS[n] for n in REGISTRY.trained()]


def offline_adapters() -> dict[str, OfflineAdapter]:
    """Every offline adapter by name, in report order."""
    found = [(name, a) for alg in trained() for name, a in alg.offline.items()]
    return dict(sorted(found, key=lambda item: item[1].order))
