"""The model the processor folds profile vectors into, swapped when a new version is active.

``ModelHandle.current`` is one immutable ``profiles.FoldModel`` reference: a batch takes it
once and tags every vector it computes with that model's version, so a vector never mixes
versions. A new version (``ModelWatcher``: ``models.v1`` with registry polling as fallback) is
loaded off the event loop and swapped in; existing profiles get a vector of the new version
lazily, on their user's next event (readers compare versions and fold in themselves or fall
back meanwhile).
"""

from __future__ import annotations

import asyncio
import logging

from streamrec_shared import metrics
from streamrec_shared.artifact_store import open_version
from streamrec_shared.artifacts import ModelBundle
from streamrec_shared.events import ModelAnnouncement
from streamrec_shared.profile import PRODUCT_DICT
from streamrec_stream_processor.profiles import FoldModel, build_fold_model
from streamrec_stream_processor.store import RedisStore

logger = logging.getLogger(__name__)


class ModelHandle:
    """Holds the current fold-in model; ``load`` builds and swaps in a new one."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.current: FoldModel | None = None
        self._announced: ModelAnnouncement | None = None

    async def reload(self) -> None:
        """Load the current version again (Redis lost its state: its item codes changed)."""
        if self._announced is not None:
            self.current = None  # no vector from codes of the lost state meanwhile
            await self.load(self._announced)

    async def load(self, announcement: ModelAnnouncement) -> None:
        """Load the announced version (artifacts read and gram computed in a thread)."""
        self._announced = announcement
        path = await asyncio.to_thread(open_version, announcement.artifact_uri)
        bundle = await asyncio.to_thread(ModelBundle.load, path)
        item_ids = bundle.als.item_ids.tolist()
        codes = await self.store.intern(PRODUCT_DICT, item_ids)
        model = await asyncio.to_thread(
            build_fold_model,
            bundle.version,
            bundle.als.item_factors,
            bundle.als.regularization,
            bundle.als.alpha,
            [codes[i] for i in item_ids],
        )
        self.current = model
        metrics.PROCESSOR_MODEL_VERSION.set(model.version)
        logger.info(
            "folding profiles into model version %s (%d items, %d factors)",
            model.version,
            bundle.n_items,
            model.factors,
        )
