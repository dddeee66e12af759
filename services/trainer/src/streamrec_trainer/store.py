"""The artifact store: where model version directories are written and garbage-collected.

``file:///dir`` keeps ``dir/v<N>/`` (manifest.json + .npz files). Readers (recommender,
stream processor) load a version from the URI the registry records.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from streamrec_shared.artifacts import ModelBundle

logger = logging.getLogger(__name__)


def local_path(uri: str) -> Path:
    """The directory of a ``file://`` URI."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise ValueError(f"unsupported artifact URI scheme {parsed.scheme!r} in {uri!r}")
    return Path(url2pathname(parsed.path))


class ArtifactStore:
    def __init__(self, base_uri: str) -> None:
        self.base = local_path(base_uri)

    def uri(self, version: int) -> str:
        return (self.base / f"v{version}").as_uri()

    def save(self, bundle: ModelBundle) -> str:
        """Write the bundle as ``v<version>``; returns its URI."""
        target = self.base / f"v{bundle.version}"
        if target.exists():  # a failed earlier attempt at the same version number
            shutil.rmtree(target)
        bundle.save(target)
        return target.as_uri()

    def delete(self, uri: str) -> None:
        path = local_path(uri)
        if path.is_dir() and path.parent == self.base:
            shutil.rmtree(path)
            logger.info("garbage-collected artifacts %s", path)
