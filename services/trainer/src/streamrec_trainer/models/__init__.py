"""Recommendation algorithms, one module each, and ``fit_all`` (see ``fit``).

Every fitted model is a ``Scorer``: ``score(users, user_items) -> (m, n_items) float32``.
"""

from streamrec_trainer.models.als import AlsModel, AlsParams, fit_als
from streamrec_trainer.models.base import Scorer
from streamrec_trainer.models.content import (
    ContentFeaturizer,
    ContentModel,
    ContentParams,
    MappedFactorsScorer,
    fit_content,
)
from streamrec_trainer.models.ease import EaseModel, EaseParams, fit_ease
from streamrec_trainer.models.fit import FittedModels, TrainParams, fit_all, similar_lists
from streamrec_trainer.models.itemknn import ItemKnnModel, ItemKnnParams, fit_itemknn
from streamrec_trainer.models.popular import PopularModel, PopularParams, fit_popular
from streamrec_trainer.models.topn import top_n, top_n_from_scores

__all__ = [
    "AlsModel",
    "AlsParams",
    "ContentFeaturizer",
    "ContentModel",
    "ContentParams",
    "EaseModel",
    "EaseParams",
    "FittedModels",
    "ItemKnnModel",
    "ItemKnnParams",
    "MappedFactorsScorer",
    "PopularModel",
    "PopularParams",
    "Scorer",
    "TrainParams",
    "fit_all",
    "fit_als",
    "fit_content",
    "fit_ease",
    "fit_itemknn",
    "fit_popular",
    "similar_lists",
    "top_n",
    "top_n_from_scores",
]
