"""Model artifact format: the contract between trainer, recommender and stream processor.

A model version is one directory::

    <root>/<version>/manifest.json   format_version, version, created_at, algorithms, params,
                                     metrics, data_window {start, end}, n_users, n_items,
                                     factors, content_vocabulary, extra, files {name: sha256}
    <root>/<version>/als.npz         item_ids (n_items,) U, user_ids (n_users,) U,
                                     item_factors (n_items, f) float32,
                                     user_factors (n_users, f) float32,
                                     regularization () float64, alpha () float64
    <root>/<version>/itemknn.npz     neighbours (n_items, N) int32 (-1 = none),
                                     neighbour_scores (n_items, N) float32
    <root>/<version>/content.npz     see ``ContentArrays``
    <root>/<version>/popular.npz     see ``PopularArrays``
    <root>/<version>/topn.npz        see ``TopNArrays``
    <root>/<version>/<other>.npz     any further arrays the trainer adds (``extra_files``),
                                     e.g. a plug-in algorithm's own arrays under its name
                                     (``streamrec_shared.algorithms``)

Every item index in every file refers to a row of ``als.npz`` ``item_ids`` (the model's item
index space), except ``content.npz``, which carries its own ``item_ids`` because it also covers
catalogue products that had no interaction yet. Ids are unicode ('U') arrays, never object
arrays; every ``.npz`` is read with ``allow_pickle=False`` after its sha256 was checked against
the manifest. Nothing here unpickles.

``ModelBundle.save`` writes into ``<dir>.partial-*`` and renames it to ``<dir>`` at the end, so a
reader polling the root never sees a half-written version; versions are immutable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Self, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
CORE_FILES = ("als", "itemknn", "content", "popular", "topn")

Arrays = Mapping[str, NDArray[Any]]


class ArtifactError(ValueError):
    """A model version directory is missing, corrupt or inconsistent."""


def _ids(values: ArrayLike, name: str) -> NDArray[np.str_]:
    arr = np.asarray(values)
    if arr.dtype.kind == "O":
        arr = arr.astype(np.str_)
    if arr.dtype.kind != "U" or arr.ndim != 1:
        raise ArtifactError(f"{name} must be a 1-d unicode array, got {arr.dtype} {arr.shape}")
    return arr


def _f32(values: ArrayLike, name: str, ndim: int) -> NDArray[np.float32]:
    arr = np.ascontiguousarray(values, dtype=np.float32)
    if arr.ndim != ndim:
        raise ArtifactError(f"{name} must be {ndim}-d, got shape {arr.shape}")
    return arr


def _i32(values: ArrayLike, name: str, ndim: int) -> NDArray[np.int32]:
    arr = np.ascontiguousarray(values, dtype=np.int32)
    if arr.ndim != ndim:
        raise ArtifactError(f"{name} must be {ndim}-d, got shape {arr.shape}")
    return arr


def _check_index(arr: NDArray[np.integer], bound: int, name: str) -> None:
    if arr.size and (arr.min() < -1 or arr.max() >= bound):
        raise ArtifactError(f"{name} holds indices outside [-1, {bound})")


def _require(arrays: Arrays, names: tuple[str, ...], file: str) -> None:
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ArtifactError(f"{file}.npz lacks arrays {missing}")


_SCALARS: dict[str, type] = {"float": np.float64, "int": np.int64}


class _NpzFile:
    """One ``<npz_name>.npz`` of a bundle: the dataclass's fields, in order, are its arrays
    (a ``float`` or ``int`` field is stored as a 0-d float64 or int64 array); a field with
    ``metadata={"npz": False}`` lives in the manifest and is passed to ``from_arrays``."""

    npz_name: ClassVar[str]

    @classmethod
    def _stored(cls) -> list[Any]:
        return [f for f in fields(cast(Any, cls)) if f.metadata.get("npz", True)]

    def to_arrays(self) -> dict[str, NDArray[Any]]:
        out: dict[str, NDArray[Any]] = {}
        for f in self._stored():
            value = getattr(self, f.name)
            scalar = _SCALARS.get(f.type)
            out[f.name] = np.asarray(value, dtype=scalar) if scalar is not None else value
        return out

    @classmethod
    def from_arrays(cls, a: Arrays, **manifest_fields: Any) -> Self:
        stored = cls._stored()
        _require(a, tuple(f.name for f in stored), cls.npz_name)
        values: dict[str, Any] = {}
        for f in stored:
            scalar = _SCALARS.get(f.type)
            values[f.name] = scalar(a[f.name]).item() if scalar is not None else a[f.name]
        return cast(Self, cast(Any, cls)(**values, **manifest_fields))


@dataclass(frozen=True)
class AlsArrays(_NpzFile):
    """``als.npz``: the ALS model and the bundle's user and item index spaces.

    item_factors (n_items, f) float32 rows follow item_ids; user_factors (n_users, f) float32
    rows follow user_ids. User factors are exact least-squares solutions against the final item
    factors (``streamrec_shared.factors.fold_in`` of the training profile), so a fold-in of the
    same profile reproduces them. Confidence is ``1 + alpha * w``.
    """

    item_ids: NDArray[np.str_]
    user_ids: NDArray[np.str_]
    item_factors: NDArray[np.float32]
    user_factors: NDArray[np.float32]
    regularization: float
    alpha: float
    npz_name: ClassVar[str] = "als"

    def __post_init__(self) -> None:
        object.__setattr__(self, "item_ids", _ids(self.item_ids, "item_ids"))
        object.__setattr__(self, "user_ids", _ids(self.user_ids, "user_ids"))
        object.__setattr__(self, "item_factors", _f32(self.item_factors, "item_factors", 2))
        object.__setattr__(self, "user_factors", _f32(self.user_factors, "user_factors", 2))
        if self.item_factors.shape[0] != self.item_ids.shape[0]:
            raise ArtifactError("item_factors rows != len(item_ids)")
        if self.user_factors.shape[0] != self.user_ids.shape[0]:
            raise ArtifactError("user_factors rows != len(user_ids)")
        if self.user_factors.shape[1] != self.item_factors.shape[1]:
            raise ArtifactError("user and item factors differ in width")

    @property
    def factors(self) -> int:
        return int(self.item_factors.shape[1])


@dataclass(frozen=True)
class ItemKnnArrays(_NpzFile):
    """``itemknn.npz``: N neighbours per item, best first; also the similar-products lists.

    neighbours (n_items, N) int32 item indices, -1 only where the catalogue is too small;
    neighbour_scores (n_items, N) float32, descending per row. The trainer lists an item's
    item-kNN neighbours first (score = kNN similarity) and fills the rest of the row with its
    nearest items by ALS factor cosine, scored below the row's last kNN score, so every item has
    N similar items. Scoring a user: ``sum_i w_ui * neighbour_scores[i]`` over recent items i.
    """

    neighbours: NDArray[np.int32]
    neighbour_scores: NDArray[np.float32]
    npz_name: ClassVar[str] = "itemknn"

    def __post_init__(self) -> None:
        object.__setattr__(self, "neighbours", _i32(self.neighbours, "neighbours", 2))
        object.__setattr__(
            self, "neighbour_scores", _f32(self.neighbour_scores, "neighbour_scores", 2)
        )
        if self.neighbours.shape != self.neighbour_scores.shape:
            raise ArtifactError("neighbours and neighbour_scores differ in shape")


@dataclass(frozen=True)
class ContentArrays(_NpzFile):
    """``content.npz`` plus ``content_vocabulary`` in the manifest.

    item_ids (n_content,) U: catalogue products, with or without interactions.
    vectors: CSR (n_content, n_features) float32 L2-normalised content vectors, stored as
    vector_data (nnz,) float32, vector_indices (nnz,) int32, vector_indptr (n_content + 1,) int64.
    projection (n_features, f) float32: ridge map from content vectors to ALS item factors;
    projection_bias (f,) float32.
    item_factors (n_content, f) float32: ``vectors @ projection + projection_bias``, the ALS-space
    factor of every catalogue product (how a brand-new product gets recommended).
    text_idf (n_text_buckets,) float32: idf per hashed text bucket.
    vocabulary: JSON-able featuriser description (categories, price band edges, bucket counts,
    block weights); enough to build the vector of a product that arrives after training.
    """

    item_ids: NDArray[np.str_]
    vector_data: NDArray[np.float32]
    vector_indices: NDArray[np.int32]
    vector_indptr: NDArray[np.int64]
    n_features: int
    projection: NDArray[np.float32]
    projection_bias: NDArray[np.float32]
    item_factors: NDArray[np.float32]
    text_idf: NDArray[np.float32]
    vocabulary: Mapping[str, Any] = field(default_factory=dict, metadata={"npz": False})
    npz_name: ClassVar[str] = "content"

    def __post_init__(self) -> None:
        object.__setattr__(self, "item_ids", _ids(self.item_ids, "content item_ids"))
        object.__setattr__(self, "vector_data", _f32(self.vector_data, "vector_data", 1))
        object.__setattr__(self, "vector_indices", _i32(self.vector_indices, "vector_indices", 1))
        object.__setattr__(
            self, "vector_indptr", np.ascontiguousarray(self.vector_indptr, dtype=np.int64)
        )
        object.__setattr__(self, "projection", _f32(self.projection, "projection", 2))
        object.__setattr__(
            self, "projection_bias", _f32(self.projection_bias, "projection_bias", 1)
        )
        object.__setattr__(self, "item_factors", _f32(self.item_factors, "item_factors", 2))
        object.__setattr__(self, "text_idf", _f32(self.text_idf, "text_idf", 1))
        n = self.item_ids.shape[0]
        if self.vector_indptr.shape != (n + 1,) or self.vector_indptr[-1] != self.vector_data.size:
            raise ArtifactError("content vector_indptr does not match item_ids / vector_data")
        if self.vector_indices.shape != self.vector_data.shape:
            raise ArtifactError("content vector_indices and vector_data differ in length")
        if self.projection.shape[0] != self.n_features:
            raise ArtifactError("projection rows != n_features")
        if self.item_factors.shape != (n, self.projection.shape[1]):
            raise ArtifactError("content item_factors shape mismatch")


@dataclass(frozen=True)
class PopularArrays(_NpzFile):
    """``popular.npz``: decayed popularity at the end of the data window.

    item_scores (n_items,) float32 global score per item; top_items (M,) int32 best first;
    categories (n_categories,) U; category_items (n_categories, M) int32 best first, -1 padded;
    category_scores (n_categories, M) float32.
    """

    item_scores: NDArray[np.float32]
    top_items: NDArray[np.int32]
    categories: NDArray[np.str_]
    category_items: NDArray[np.int32]
    category_scores: NDArray[np.float32]
    npz_name: ClassVar[str] = "popular"

    def __post_init__(self) -> None:
        object.__setattr__(self, "item_scores", _f32(self.item_scores, "item_scores", 1))
        object.__setattr__(self, "top_items", _i32(self.top_items, "top_items", 1))
        object.__setattr__(self, "categories", _ids(self.categories, "categories"))
        object.__setattr__(self, "category_items", _i32(self.category_items, "category_items", 2))
        object.__setattr__(
            self, "category_scores", _f32(self.category_scores, "category_scores", 2)
        )
        if self.category_items.shape != self.category_scores.shape:
            raise ArtifactError("category_items and category_scores differ in shape")
        if self.category_items.shape[0] != self.categories.shape[0]:
            raise ArtifactError("category_items rows != len(categories)")


@dataclass(frozen=True)
class TopNArrays(_NpzFile):
    """``topn.npz``: precomputed recommendations for recently active users.

    user_ids (n_active,) U; items (n_active, N) int32 item indices best first, -1 padded;
    scores (n_active, N) float32. Already-interacted items are excluded.
    """

    user_ids: NDArray[np.str_]
    items: NDArray[np.int32]
    scores: NDArray[np.float32]
    npz_name: ClassVar[str] = "topn"

    def __post_init__(self) -> None:
        object.__setattr__(self, "user_ids", _ids(self.user_ids, "topn user_ids"))
        object.__setattr__(self, "items", _i32(self.items, "topn items", 2))
        object.__setattr__(self, "scores", _f32(self.scores, "topn scores", 2))
        if self.items.shape != self.scores.shape or self.items.shape[0] != self.user_ids.size:
            raise ArtifactError("topn arrays disagree in shape")


@dataclass(frozen=True)
class DataWindow:
    """Event-time span of the training data, ISO-8601 UTC strings."""

    start: str
    end: str

    @classmethod
    def from_timestamps(cls, start_ts: float, end_ts: float) -> DataWindow:
        """From unix seconds."""
        return cls(
            start=datetime.fromtimestamp(start_ts, UTC).isoformat(),
            end=datetime.fromtimestamp(end_ts, UTC).isoformat(),
        )


def _plain(value: Any) -> Any:
    """Mappings -> dicts and tuples -> lists, recursively (what json.dumps accepts)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _json_mapping(value: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    try:
        return MappingProxyType(json.loads(json.dumps(_plain(value), allow_nan=False)))
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"{name} must be JSON-serialisable (no NaN): {exc}") from exc


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelBundle:
    """One immutable model version. ``als`` is mandatory; the other parts are optional.

    ``extra_files`` maps a file stem (``[a-z0-9_]+``, not a core name) to arrays the trainer wants
    to ship alongside (numeric or unicode only). ``files`` (stem -> sha256) is filled by ``load``.
    """

    version: int
    created_at: datetime
    data_window: DataWindow
    als: AlsArrays
    itemknn: ItemKnnArrays | None = None
    content: ContentArrays | None = None
    popular: PopularArrays | None = None
    topn: TopNArrays | None = None
    algorithms: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    extra_files: Mapping[str, Arrays] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.version < 0:
            raise ArtifactError("version must be >= 0")
        if self.created_at.tzinfo is None:
            raise ArtifactError("created_at must be timezone-aware")
        for name in ("params", "metrics", "extra"):
            object.__setattr__(self, name, _json_mapping(getattr(self, name), name))
        if not self.algorithms:
            present = [n for n in CORE_FILES if n != "topn" and getattr(self, n) is not None]
            object.__setattr__(self, "algorithms", tuple(present))
        for stem, arrays in self.extra_files.items():
            if stem in CORE_FILES or not stem.replace("_", "").isalnum() or stem != stem.lower():
                raise ArtifactError(f"bad extra file name {stem!r}")
            for key, arr in arrays.items():
                if np.asarray(arr).dtype.kind == "O":
                    raise ArtifactError(f"{stem}.npz:{key} is an object array")
        n_items = self.n_items
        if self.itemknn is not None:
            if self.itemknn.neighbours.shape[0] != n_items:
                raise ArtifactError("itemknn rows != n_items")
            _check_index(self.itemknn.neighbours, n_items, "itemknn.neighbours")
        if self.popular is not None:
            if self.popular.item_scores.shape[0] != n_items:
                raise ArtifactError("popular item_scores length != n_items")
            _check_index(self.popular.category_items, n_items, "popular.category_items")
            _check_index(self.popular.top_items, n_items, "popular.top_items")
        if self.topn is not None:
            _check_index(self.topn.items, n_items, "topn.items")
        if self.content is not None and self.content.item_factors.shape[1] != self.factors:
            raise ArtifactError("content item_factors width != ALS factors")

    @property
    def n_items(self) -> int:
        return int(self.als.item_ids.shape[0])

    @property
    def n_users(self) -> int:
        return int(self.als.user_ids.shape[0])

    @property
    def factors(self) -> int:
        return self.als.factors

    def _parts(self) -> dict[str, dict[str, NDArray[Any]]]:
        parts: dict[str, dict[str, NDArray[Any]]] = {"als": self.als.to_arrays()}
        for name in CORE_FILES[1:]:  # after als
            part = getattr(self, name)
            if part is not None:
                parts[name] = part.to_arrays()
        for stem, arrays in self.extra_files.items():
            parts[stem] = {k: np.asarray(v) for k, v in arrays.items()}
        return parts

    def manifest(self, files: Mapping[str, str]) -> dict[str, Any]:
        """The manifest.json content for this bundle with the given ``{file name: sha256}``."""
        return {
            "format_version": FORMAT_VERSION,
            "version": self.version,
            "created_at": self.created_at.isoformat(),
            "algorithms": list(self.algorithms),
            "params": _plain(self.params),
            "metrics": _plain(self.metrics),
            "data_window": {"start": self.data_window.start, "end": self.data_window.end},
            "n_users": self.n_users,
            "n_items": self.n_items,
            "factors": self.factors,
            "content_vocabulary": (
                json.loads(json.dumps(self.content.vocabulary)) if self.content else None
            ),
            "extra": json.loads(json.dumps(dict(self.extra))),
            "files": dict(files),
        }

    def save(self, directory: str | os.PathLike[str]) -> dict[str, Any]:
        """Write the version directory atomically; returns the manifest written.

        Raises ``FileExistsError`` if ``directory`` exists (versions are immutable).
        """
        target = Path(directory)
        if target.exists():
            raise FileExistsError(f"model version directory already exists: {target}")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.partial-", dir=target.parent))
        try:
            files: dict[str, str] = {}
            for stem, arrays in self._parts().items():
                path = staging / f"{stem}.npz"
                with path.open("wb") as fh:
                    np.savez(fh, allow_pickle=False, **arrays)
                files[path.name] = sha256_file(path)
            manifest = self.manifest(files)
            (staging / MANIFEST_NAME).write_text(
                json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False) + "\n",
                encoding="utf-8",
            )
            staging.chmod(0o755)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        logger.info("saved model version %s to %s (%d files)", self.version, target, len(files))
        return manifest

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> ModelBundle:
        """Read and verify a version directory (every file's sha256, shapes, dtypes).

        Raises ``ArtifactError`` on any inconsistency, ``FileNotFoundError`` if it is missing.
        """
        root = Path(directory)
        try:
            manifest = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"{root / MANIFEST_NAME} is not valid JSON: {exc}") from exc
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ArtifactError(f"unsupported format_version {manifest.get('format_version')!r}")
        files: dict[str, str] = dict(manifest.get("files") or {})
        if "als.npz" not in files:
            raise ArtifactError("manifest lists no als.npz")
        parts: dict[str, dict[str, NDArray[Any]]] = {}
        for name, expected in files.items():
            path = root / name
            if Path(name).name != name or not name.endswith(".npz"):
                raise ArtifactError(f"unexpected file name in manifest: {name!r}")
            actual = sha256_file(path)
            if actual != expected:
                raise ArtifactError(f"sha256 mismatch for {path}: {actual} != {expected}")
            try:
                with np.load(path, allow_pickle=False) as npz:
                    parts[name[: -len(".npz")]] = {k: npz[k] for k in npz.files}
            except ValueError as exc:  # object arrays refuse to load without pickle
                raise ArtifactError(f"cannot load {path} without pickle: {exc}") from exc
        window = manifest["data_window"]
        bundle = cls(
            version=int(manifest["version"]),
            created_at=datetime.fromisoformat(manifest["created_at"]),
            data_window=DataWindow(start=window["start"], end=window["end"]),
            als=AlsArrays.from_arrays(parts.pop("als")),
            itemknn=ItemKnnArrays.from_arrays(parts.pop("itemknn")) if "itemknn" in parts else None,
            content=(
                ContentArrays.from_arrays(
                    parts.pop("content"), vocabulary=manifest["content_vocabulary"]
                )
                if "content" in parts
                else None
            ),
            popular=PopularArrays.from_arrays(parts.pop("popular")) if "popular" in parts else None,
            topn=TopNArrays.from_arrays(parts.pop("topn")) if "topn" in parts else None,
            algorithms=tuple(manifest["algorithms"]),
            params=manifest.get("params") or {},
            metrics=manifest.get("metrics") or {},
            extra=manifest.get("extra") or {},
            extra_files=parts,
            files=files,
        )
        for key in ("n_users", "n_items", "factors"):
            if manifest.get(key) != getattr(bundle, key):
                raise ArtifactError(f"manifest {key}={manifest.get(key)} != arrays")
        return bundle
