"""The trainer's artifact store: ``streamrec_shared.artifact_store`` (``file://`` and ``s3://``).

The trainer writes model versions (``ArtifactStore.save``) and garbage-collects old ones
(``delete`` from the registry, ``collect_garbage`` for versions the registry no longer knows);
readers use ``streamrec_shared.artifact_store.local_copy`` on the URI the registry records.
"""

from __future__ import annotations

from streamrec_shared.artifact_store import (
    ArtifactStore,
    LocalArtifactStore,
    S3ArtifactStore,
    local_path,
)

__all__ = ["ArtifactStore", "LocalArtifactStore", "S3ArtifactStore", "local_path"]
