"""The artifact store: model version directories under ``file:///dir`` or ``s3://bucket/prefix``.

Both schemes hold the same layout, one immutable directory per version (see
``streamrec_shared.artifacts``)::

    <base>/v<N>/manifest.json
    <base>/v<N>/<stem>.npz ...

A version exists for readers once its ``manifest.json`` does:

- ``file://``: ``ModelBundle.save`` writes a staging directory and renames it into place;
  ``delete`` renames the version aside before removing it. Both renames are atomic.
- ``s3://`` (AWS or any S3-compatible server): ``save`` writes the bundle to a local temporary
  directory, uploads every ``.npz`` first and ``manifest.json`` LAST; ``delete`` removes the
  manifest FIRST. S3 has strong read-after-write consistency, so a reader that finds the
  manifest finds every file it lists, and a reader never sees a partial version.

Readers (recommender, stream processor, trainer exports) turn an announced ``artifact_uri`` into
a directory for ``ModelBundle.load`` with ONE function, whatever the scheme: ``open_version(uri,
settings)`` (``local_copy(uri, cache_dir)`` underneath): a ``file://`` URI is its own path; an
``s3://`` version is downloaded once into ``cache_dir/v<N>`` (the files the manifest lists,
sha256-verified by ``ModelBundle.load`` before the copy is renamed into place).

S3 access uses boto3: credentials come from its standard chain (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, ``AWS_PROFILE`` and the shared config files,
web identity such as EKS IRSA, container and instance metadata); the endpoint is
``ArtifactSettings.endpoint_url`` when set, else ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``
(read by botocore itself), else AWS. With an explicit endpoint (an S3-compatible server such as
MinIO or Ceph) buckets are addressed path-style, which every such server supports.

Every call blocks (network or disk): call it from a thread in async code.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from streamrec_shared.artifacts import MANIFEST_NAME, ArtifactError, ModelBundle
from streamrec_shared.settings import ArtifactSettings, artifact_settings_from_env

if TYPE_CHECKING:
    from boto3.s3.transfer import TransferConfig
    from mypy_boto3_s3.client import S3Client

logger = logging.getLogger(__name__)

_VERSION = re.compile(r"v(\d+)")
# local leftovers of an interrupted save or delete: v<N>.partial-*, v<N>.deleted-*
_LEFTOVER = re.compile(r"v(\d+)\.(?:partial|deleted)-.+")
# in a reader's cache: downloads in progress and copies being replaced
_PARTIAL = re.compile(r"v\d+\.partial-.+")
_STALE = re.compile(r"v\d+\.stale-.+")
_SOURCE_MARKER = ".source-uri"  # in a reader's cached copy: the URI it was downloaded from
_DELETE_BATCH = 1000  # S3 DeleteObjects limit


def _file_path(uri: str) -> Path:
    """The directory of a ``file://`` URI (readers use ``open_version``)."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise ValueError(f"not a file:// URI: {uri!r}")
    return Path(url2pathname(parsed.path))


def version_of(uri: str) -> int:
    """The version number of a version URI (``.../v<N>``); ``ValueError`` otherwise."""
    match = _VERSION.fullmatch(urlparse(uri).path.rstrip("/").rsplit("/", 1)[-1])
    if match is None:
        raise ValueError(f"not a model version URI (…/v<N>): {uri!r}")
    return int(match.group(1))


def _check_manifest_files(manifest: dict[str, Any], where: str) -> list[str]:
    """The ``.npz`` file names a manifest lists, refusing anything that is not a plain name."""
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ArtifactError(f"{where}: manifest lists no files")
    names = sorted(str(name) for name in files)
    for name in names:
        if Path(name).name != name or not name.endswith(".npz") or name.startswith("."):
            raise ArtifactError(f"{where}: unexpected file name in manifest: {name!r}")
    return names


class ArtifactStore(ABC):
    """Model versions under one base URI. Build one with ``open`` or ``from_settings``."""

    base_uri: str

    @staticmethod
    def open(
        base_uri: str, *, endpoint_url: str | None = None, s3_client: S3Client | None = None
    ) -> ArtifactStore:
        """The store for ``file:///dir`` or ``s3://bucket[/prefix]``.

        ``endpoint_url`` / ``s3_client`` only matter for ``s3://`` (see the module docstring).
        """
        scheme = urlparse(base_uri).scheme
        if scheme == "file":
            return LocalArtifactStore(_file_path(base_uri))
        if scheme == "s3":
            return S3ArtifactStore(
                base_uri, client=s3_client or s3_client_for(endpoint_url=endpoint_url)
            )
        raise ValueError(f"unsupported artifact URI scheme {scheme!r} in {base_uri!r}")

    @classmethod
    def from_settings(cls, settings: ArtifactSettings) -> ArtifactStore:
        return cls.open(settings.uri, endpoint_url=settings.endpoint_url)

    @abstractmethod
    def uri(self, version: int) -> str:
        """The URI of version ``version`` (whether or not it exists)."""

    @abstractmethod
    def save(self, bundle: ModelBundle) -> str:
        """Write ``bundle`` as ``v<bundle.version>``, replacing the leftovers of an earlier failed
        attempt at the same number; returns its URI. Readers see the version whole or not at all.
        """

    @abstractmethod
    def versions(self) -> list[int]:
        """Complete versions (manifest present), ascending."""

    @abstractmethod
    def local_copy(self, uri: str, cache_dir: str | os.PathLike[str]) -> Path:
        """A local directory holding version ``uri`` of this store (see ``local_copy``)."""

    @abstractmethod
    def _present(self) -> set[int]:
        """Every version with anything stored: complete, partial or half-deleted."""

    @abstractmethod
    def _remove(self, version: int) -> None:
        """Remove everything of ``version`` (it disappears for readers first)."""

    def owns(self, uri: str) -> int | None:
        """The version number if ``uri`` is a version directly under this store, else None."""
        try:
            version = version_of(uri)
        except ValueError:
            return None
        return version if self.uri(version) == uri.rstrip("/") else None

    def delete(self, uri: str) -> bool:
        """Delete the version at ``uri``; False (and nothing touched) if it is not one of ours."""
        version = self.owns(uri)
        if version is None:
            logger.warning("not deleting %s: not a version of the store at %s", uri, self.base_uri)
            return False
        self._remove(version)
        logger.info("garbage-collected artifacts %s", uri)
        return True

    def collect_garbage(self, retention: int, protect: Iterable[int] = ()) -> list[int]:
        """Keep the newest ``retention`` complete versions and ``protect``; remove the rest.

        Incomplete versions (an interrupted upload or delete) are removed only when older than
        the oldest kept complete version, so an upload in progress is never touched. Returns the
        versions removed, ascending.
        """
        if retention < 1:
            raise ValueError("retention must be >= 1")
        kept = self.versions()[-retention:]
        if not kept:
            return []
        keep = set(kept) | set(protect)
        doomed = sorted(v for v in self._present() if v < kept[0] and v not in keep)
        for version in doomed:
            self._remove(version)
        if doomed:
            logger.info("garbage-collected artifact versions %s from %s", doomed, self.base_uri)
        return doomed


class LocalArtifactStore(ArtifactStore):
    """``file:///dir``: ``dir/v<N>/``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.base_uri = base.as_uri()

    def uri(self, version: int) -> str:
        return (self.base / f"v{version}").as_uri()

    def save(self, bundle: ModelBundle) -> str:
        target = self.base / f"v{bundle.version}"
        if target.exists():  # a failed earlier attempt at the same version number
            self._remove(bundle.version)
        bundle.save(target)
        return target.as_uri()

    def versions(self) -> list[int]:
        if not self.base.is_dir():
            return []
        found = (_VERSION.fullmatch(p.name) for p in self.base.iterdir())
        return sorted(
            int(m.group(1))
            for m in found
            if m and (self.base / m.group(0) / MANIFEST_NAME).is_file()
        )

    def _present(self) -> set[int]:
        if not self.base.is_dir():
            return set()
        present = set()
        for path in self.base.iterdir():
            match = _VERSION.fullmatch(path.name) or _LEFTOVER.fullmatch(path.name)
            if match and path.is_dir():
                present.add(int(match.group(1)))
        return present

    def _remove(self, version: int) -> None:
        target = self.base / f"v{version}"
        if target.exists():
            aside = self.base / f"v{version}.deleted-{uuid.uuid4().hex[:8]}"
            os.replace(target, aside)  # atomic: readers see the version whole or not at all
        for path in self.base.glob(f"v{version}.*"):
            if _LEFTOVER.fullmatch(path.name):
                shutil.rmtree(path, ignore_errors=True)

    def owns(self, uri: str) -> int | None:
        try:
            version, path = version_of(uri), _file_path(uri)
        except ValueError:
            return None
        return version if path == self.base / f"v{version}" else None

    def local_copy(self, uri: str, cache_dir: str | os.PathLike[str]) -> Path:
        del cache_dir  # already local
        return _local_version(uri)


def _local_version(uri: str) -> Path:
    path = _file_path(uri)
    if not (path / MANIFEST_NAME).is_file():
        raise FileNotFoundError(f"no model version at {uri}")
    return path


def s3_client_for(*, endpoint_url: str | None = None) -> S3Client:
    """A boto3 S3 client: standard credential chain; endpoint from the argument or botocore's
    own ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``; path-style addressing with an explicit
    endpoint. Checksums only where S3 requires them (our sha256 covers integrity end to end,
    and several S3-compatible servers reject the newer default checksum headers)."""
    import boto3  # imported here: only s3:// users pay for it
    from botocore.config import Config

    explicit = (
        endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    )
    config = Config(
        retries={"max_attempts": 5, "mode": "standard"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path" if explicit else "auto"},
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)


def _transfer_config() -> TransferConfig:
    from boto3.s3.transfer import TransferConfig

    # few threads: the machines that train and serve are small
    return TransferConfig(
        multipart_threshold=64 << 20, multipart_chunksize=16 << 20, max_concurrency=4
    )


def _split_s3(uri: str) -> tuple[str, str]:
    """(bucket, key prefix without leading or trailing slash) of an ``s3://`` URI."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3://bucket[/prefix] URI: {uri!r}")
    return parsed.netloc, parsed.path.strip("/")


def _is_missing(exc: Exception) -> bool:
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in ("NoSuchKey", "404", "NotFound")


class S3ArtifactStore(ArtifactStore):
    """``s3://bucket[/prefix]``: objects ``prefix/v<N>/<file>``."""

    def __init__(self, base_uri: str, *, client: S3Client) -> None:
        self.bucket, prefix = _split_s3(base_uri)
        self.prefix = f"{prefix}/" if prefix else ""
        self.base_uri = f"s3://{self.bucket}/{prefix}".rstrip("/")
        self.client = client

    def uri(self, version: int) -> str:
        return f"s3://{self.bucket}/{self.prefix}v{version}"

    def _key(self, version: int, name: str) -> str:
        return f"{self.prefix}v{version}/{name}"

    def _objects(self) -> dict[int, list[str]]:
        """Every object key under the store's prefix that belongs to a version, by version."""
        found: dict[int, list[str]] = {}
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                head = key[len(self.prefix) :].split("/", 1)[0]
                match = _VERSION.fullmatch(head)
                if match and "/" in key[len(self.prefix) :]:
                    found.setdefault(int(match.group(1)), []).append(key)
        return found

    def save(self, bundle: ModelBundle) -> str:
        version = bundle.version
        if self._objects().get(version):  # a failed earlier attempt at the same version number
            logger.warning("replacing leftovers of %s", self.uri(version))
            self._remove(version)
        config = _transfer_config()
        with tempfile.TemporaryDirectory(prefix="streamrec-upload-") as tmp:
            staging = Path(tmp) / f"v{version}"
            manifest = bundle.save(staging)
            files = _check_manifest_files(manifest, self.uri(version))
            # the manifest LAST: the version exists for readers from that moment on
            uploads = [(name, "application/octet-stream") for name in files]
            uploads.append((MANIFEST_NAME, "application/json"))
            try:
                for name, content_type in uploads:
                    self.client.upload_file(
                        str(staging / name),
                        self.bucket,
                        self._key(version, name),
                        ExtraArgs={"ContentType": content_type},
                        Config=config,
                    )
            except BaseException:
                self._cleanup_failed(version)
                raise
        uri = self.uri(version)
        logger.info("uploaded model version %s to %s", version, uri)
        return uri

    def _cleanup_failed(self, version: int) -> None:
        try:
            self._remove(version)
        except Exception:  # the original error matters more; GC removes the rest later
            logger.exception("could not clean up the partial upload of %s", self.uri(version))

    def versions(self) -> list[int]:
        manifest = f"/{MANIFEST_NAME}"
        return sorted(
            v for v, keys in self._objects().items() if any(k.endswith(manifest) for k in keys)
        )

    def _present(self) -> set[int]:
        return set(self._objects())

    def _remove(self, version: int) -> None:
        # the manifest FIRST: from then on readers no longer see the version
        self.client.delete_object(Bucket=self.bucket, Key=self._key(version, MANIFEST_NAME))
        keys = self._objects().get(version, [])
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            response = self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
            )
            errors = response.get("Errors", [])
            if errors:
                raise OSError(f"could not delete {len(errors)} objects of {self.uri(version)}")

    def local_copy(self, uri: str, cache_dir: str | os.PathLike[str]) -> Path:
        """Download version ``uri`` into ``cache_dir/v<N>`` unless a verified copy is there."""
        version = self.owns(uri)
        if version is None:
            raise ValueError(f"{uri} is not a version of the store at {self.base_uri}")
        cache = Path(cache_dir)
        target = cache / f"v{version}"
        if _cached(target, uri):
            return target
        cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"v{version}.partial-", dir=cache))
        try:
            try:
                response = self.client.get_object(
                    Bucket=self.bucket, Key=self._key(version, MANIFEST_NAME)
                )
            except Exception as exc:
                if _is_missing(exc):
                    raise FileNotFoundError(f"no model version at {uri}") from exc
                raise
            raw = response["Body"].read()
            try:
                manifest = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ArtifactError(f"{uri}/{MANIFEST_NAME} is not valid JSON: {exc}") from exc
            config = _transfer_config()
            for name in _check_manifest_files(manifest, uri):
                self.client.download_file(
                    self.bucket, self._key(version, name), str(staging / name), Config=config
                )
            (staging / MANIFEST_NAME).write_bytes(raw)
            ModelBundle.load(staging)  # every sha256, shape and dtype, before it counts as cached
            (staging / _SOURCE_MARKER).write_text(uri, encoding="utf-8")
            _install(staging, target, uri)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        logger.info("downloaded model version %s to %s", uri, target)
        return target


def _cached(target: Path, uri: str) -> bool:
    marker = target / _SOURCE_MARKER
    return (
        (target / MANIFEST_NAME).is_file()
        and marker.is_file()
        and marker.read_text(encoding="utf-8") == uri
    )


def _install(staging: Path, target: Path, uri: str) -> None:
    """Rename a verified download into place (another process may have been quicker)."""
    if target.exists():
        if _cached(target, uri):  # a concurrent reader installed the same version first
            shutil.rmtree(staging, ignore_errors=True)
            return
        # a stale copy (another store with the same version number, or an interrupted one)
        aside = target.with_name(f"{target.name}.stale-{uuid.uuid4().hex[:8]}")
        os.replace(target, aside)
        shutil.rmtree(aside, ignore_errors=True)
    try:
        os.replace(staging, target)
    except OSError:
        if not _cached(target, uri):
            raise
        shutil.rmtree(staging, ignore_errors=True)


def local_copy(
    uri: str,
    cache_dir: str | os.PathLike[str],
    *,
    endpoint_url: str | None = None,
    s3_client: S3Client | None = None,
) -> Path:
    """A local directory holding model version ``uri``, for ``ModelBundle.load``.

    ``file://``: the directory itself (``FileNotFoundError`` if it has no manifest).
    ``s3://bucket/prefix/v<N>``: downloaded once into ``cache_dir/v<N>`` (only the files its
    manifest lists, sha256-verified, renamed into place when complete); later calls return the
    cached copy. ``FileNotFoundError`` when the version has no manifest (absent, still
    uploading, or deleted), ``ArtifactError`` when a file does not match the manifest.
    """
    scheme = urlparse(uri).scheme
    if scheme == "file":
        return _local_version(uri)
    if scheme != "s3":
        raise ValueError(f"unsupported artifact URI scheme {scheme!r} in {uri!r}")
    base = uri.rstrip("/").rsplit("/", 1)[0]
    store = S3ArtifactStore(base, client=s3_client or s3_client_for(endpoint_url=endpoint_url))
    return store.local_copy(uri, cache_dir)


def open_version(uri: str, settings: ArtifactSettings | None = None) -> Path:
    """THE artifact reader: a local directory holding model version ``uri`` for
    ``ModelBundle.load``, for every scheme the store writes (``file://``, ``s3://``).

    ``settings`` (default: ``STREAMREC_ARTIFACTS__*`` from the environment, as the service's own
    settings read them) gives the S3 endpoint and the download cache; after an ``s3://``
    download the cache keeps only this version (and downloads in progress). Blocking: call it
    from a thread in async code. Errors as ``local_copy``.
    """
    if settings is None:
        settings = artifact_settings_from_env()
    path = local_copy(uri, settings.cache_dir, endpoint_url=settings.endpoint_url)
    if urlparse(uri).scheme == "s3":
        prune_cache(settings.cache_dir, keep=[path])
    return path


def prune_cache(
    cache_dir: str | os.PathLike[str], keep: Iterable[Path], *, older_than_s: float = 3600.0
) -> list[Path]:
    """Remove the downloaded versions in ``cache_dir`` other than ``keep`` (e.g. the one just
    loaded), and leftovers of downloads interrupted more than ``older_than_s`` ago. Returns
    what was removed."""
    cache = Path(cache_dir)
    if not cache.is_dir():
        return []
    kept = {Path(p).resolve() for p in keep}
    now = time.time()
    removed = []
    for path in cache.iterdir():
        if not path.is_dir() or path.resolve() in kept:
            continue
        name = path.name
        # another process (a second worker) may be downloading into a fresh partial directory
        stale_partial = _PARTIAL.fullmatch(name) and now - path.stat().st_mtime > older_than_s
        if _VERSION.fullmatch(name) or _STALE.fullmatch(name) or stale_partial:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return sorted(removed)
