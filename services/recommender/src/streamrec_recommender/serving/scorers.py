"""Serving scorers by algorithm name: what ``Engine`` runs for ``algorithm=<name>``.

Each algorithm's module in ``serving/algorithms/`` registers one ``ServingAlgorithm`` (found by
``load_builtin``, no list to edit); the names, fallback chain and hybrid members come from
``streamrec_shared.algorithms.REGISTRY``. A scorer returns serving-space candidates (at most
``c``, after the job's filter) or None when it cannot run for this job (no vector, no recent
items, its arrays missing from the model), so the engine falls back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from streamrec_recommender.serving.model import ServingModel
from streamrec_recommender.serving.ranking import Ranked
from streamrec_shared.algorithms import Plugins

if TYPE_CHECKING:
    from streamrec_recommender.serving.context import Job
    from streamrec_recommender.serving.engine import Engine

Score = Callable[["Engine", "Job", int], Ranked | None]
"""(engine, job, c) -> the best ``c`` candidates after ``job.flt``, or None."""
Available = Callable[[ServingModel, bool, bool], bool]
"""(model, has_vector, has_recent) -> whether the scorer can answer such a user (the bandit
only draws arms that can)."""


def always(model: ServingModel, has_vector: bool, has_recent: bool) -> bool:
    del model, has_vector, has_recent
    return True


@dataclass(frozen=True)
class ServingAlgorithm:
    """name: as in ``streamrec_shared.algorithms``; basis: what its strategy is named after
    (``vector``: the user vector's source, ``recent``: ``recent_items``, ``popular``);
    reads_als: it runs the ``als`` scorer, so the batcher scores its exact ALS candidates
    together with other requests' (``Engine.als_depth``)."""

    name: str
    score: Score
    available: Available = always
    basis: Literal["vector", "recent", "popular"] = "popular"
    reads_als: bool = False


_PLUGINS: Plugins[ServingAlgorithm] = Plugins("streamrec_recommender.serving.algorithms")
SCORERS = _PLUGINS.by_name
register = _PLUGINS.register
"""Serve ``algorithm.name`` with this scorer (a plug-in's recommender side)."""
load_builtin = _PLUGINS.load_builtin
"""Import every module of ``serving/algorithms`` (each registers itself)."""


load_builtin()
