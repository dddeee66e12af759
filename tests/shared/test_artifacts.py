"""Model artifact format: round trip, integrity checks, no pickle anywhere."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamrec_shared import artifacts

F = 3


def _bundle(version: int = 7, **overrides: Any) -> artifacts.ModelBundle:
    rng = np.random.default_rng(0)
    items = np.array(["p1", "p2", "p3", "p4"])
    users = np.array(["alice", "bob"])
    als = artifacts.AlsArrays(
        item_ids=items,
        user_ids=users,
        item_factors=rng.normal(size=(4, F)).astype(np.float32),
        user_factors=rng.normal(size=(2, F)).astype(np.float32),
        regularization=0.1,
        alpha=0.2,
    )
    content = artifacts.ContentArrays(
        item_ids=np.array(["p1", "p2", "p3", "p4", "new"]),
        vector_data=np.array([1.0, 0.6, 0.8, 1.0, 1.0]),
        vector_indices=np.array([0, 1, 2, 2, 1]),
        vector_indptr=np.array([0, 1, 3, 4, 4, 5]),
        n_features=3,
        projection=rng.normal(size=(3, F)).astype(np.float32),
        projection_bias=np.zeros(F, dtype=np.float32),
        item_factors=rng.normal(size=(5, F)).astype(np.float32),
        text_idf=np.ones(2, dtype=np.float32),
        vocabulary={"featurizer": "streamrec-content-v1", "categories": ["mugs"]},
    )
    kwargs: dict[str, Any] = dict(
        version=version,
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        data_window=artifacts.DataWindow.from_timestamps(1_291_191_960, 1_323_433_800),
        als=als,
        itemknn=artifacts.ItemKnnArrays(
            neighbours=np.array([[1, 2], [0, -1], [3, 0], [2, 1]]),
            neighbour_scores=np.array([[0.9, 0.1], [0.9, 0.0], [0.5, 0.4], [0.5, 0.3]]),
        ),
        content=content,
        popular=artifacts.PopularArrays(
            item_scores=np.array([3.0, 2.0, 1.0, 0.0]),
            top_items=np.array([0, 1, 2]),
            categories=np.array(["mugs"]),
            category_items=np.array([[0, 1, -1]]),
            category_scores=np.array([[3.0, 2.0, 0.0]]),
        ),
        topn=artifacts.TopNArrays(
            user_ids=np.array(["bob"]), items=np.array([[2, 3]]), scores=np.array([[1.0, 0.5]])
        ),
        params={"als": {"factors": F}, "half_life_days": None},
        metrics={"ndcg@20": 0.11},
        extra={"note": ("a", "b")},
        extra_files={"ease_topn": {"items": np.arange(6).reshape(2, 3), "names": np.array(["x"])}},
    )
    kwargs.update(overrides)
    return artifacts.ModelBundle(**kwargs)


def test_round_trip(tmp_path: Path) -> None:
    bundle = _bundle()
    manifest = bundle.save(tmp_path / "7")
    assert sorted(manifest["files"]) == [
        "als.npz",
        "content.npz",
        "ease_topn.npz",
        "itemknn.npz",
        "popular.npz",
        "topn.npz",
    ]
    on_disk = json.loads((tmp_path / "7" / "manifest.json").read_text())
    assert on_disk == manifest
    for key in (
        "version",
        "created_at",
        "algorithms",
        "params",
        "metrics",
        "data_window",
        "n_users",
        "n_items",
        "factors",
    ):
        assert key in on_disk
    assert on_disk["n_items"] == 4
    assert on_disk["n_users"] == 2
    assert on_disk["factors"] == F
    assert on_disk["algorithms"] == ["als", "itemknn", "content", "popular"]
    assert on_disk["data_window"]["start"].startswith("2010-12-01T08:26:00")
    assert on_disk["content_vocabulary"]["categories"] == ["mugs"]
    for name, digest in manifest["files"].items():
        assert artifacts.sha256_file(tmp_path / "7" / name) == digest

    loaded = artifacts.ModelBundle.load(tmp_path / "7")
    assert loaded.version == 7
    assert loaded.created_at == bundle.created_at
    assert loaded.als.item_ids.dtype.kind == "U"
    assert loaded.als.item_factors.dtype == np.float32
    np.testing.assert_array_equal(loaded.als.user_factors, bundle.als.user_factors)
    assert loaded.als.alpha == 0.2
    assert loaded.als.regularization == 0.1
    assert loaded.itemknn is not None
    assert loaded.itemknn.neighbours.dtype == np.int32
    assert loaded.content is not None
    assert loaded.content.vocabulary["categories"] == ["mugs"]
    assert loaded.topn is not None
    assert loaded.topn.user_ids.tolist() == ["bob"]
    assert loaded.params["als"]["factors"] == F
    assert loaded.metrics["ndcg@20"] == 0.11
    np.testing.assert_array_equal(
        loaded.extra_files["ease_topn"]["items"], np.arange(6).reshape(2, 3)
    )
    assert loaded.files == manifest["files"]
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_versions_are_immutable(tmp_path: Path) -> None:
    _bundle().save(tmp_path / "7")
    with pytest.raises(FileExistsError):
        _bundle().save(tmp_path / "7")


def test_tampered_file_is_rejected(tmp_path: Path) -> None:
    _bundle().save(tmp_path / "7")
    path = tmp_path / "7" / "itemknn.npz"
    data = dict(np.load(path))
    data["neighbours"] = data["neighbours"][::-1].copy()
    with path.open("wb") as fh:
        np.savez(fh, **data)
    with pytest.raises(artifacts.ArtifactError, match="sha256"):
        artifacts.ModelBundle.load(tmp_path / "7")


def test_object_arrays_never_load(tmp_path: Path) -> None:
    _bundle().save(tmp_path / "7")
    root = tmp_path / "7"
    # Write an npz holding a pickled object array and make the manifest vouch for it.
    buf = io.BytesIO()
    np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(root / "topn.npz", "w") as zf:
        zf.writestr("user_ids.npy", buf.getvalue())
        zf.writestr("items.npy", b"")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["files"]["topn.npz"] = artifacts.sha256_file(root / "topn.npz")
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(artifacts.ArtifactError, match="pickle"):
        artifacts.ModelBundle.load(root)


def test_validation_of_contents(tmp_path: Path) -> None:
    with pytest.raises(artifacts.ArtifactError, match="itemknn rows"):
        _bundle(
            itemknn=artifacts.ItemKnnArrays(
                neighbours=np.zeros((2, 2), dtype=np.int32),
                neighbour_scores=np.zeros((2, 2), dtype=np.float32),
            )
        )
    with pytest.raises(artifacts.ArtifactError, match="indices outside"):
        _bundle(
            topn=artifacts.TopNArrays(
                user_ids=np.array(["a"]), items=np.array([[9]]), scores=np.array([[1.0]])
            )
        )
    with pytest.raises(artifacts.ArtifactError, match="object array"):
        _bundle(extra_files={"bad": {"x": np.array([object()], dtype=object)}})
    with pytest.raises(artifacts.ArtifactError, match="extra file name"):
        _bundle(extra_files={"als": {"x": np.zeros(1)}})
    with pytest.raises(artifacts.ArtifactError, match="timezone"):
        _bundle(created_at=datetime(2026, 1, 1))
    with pytest.raises(artifacts.ArtifactError, match="JSON"):
        _bundle(metrics={"x": float("nan")})
    # object-dtype ids are converted to unicode, never stored as objects
    b = _bundle(
        als=artifacts.AlsArrays(
            item_ids=np.array(["p1", "p2", "p3", "p4"], dtype=object),
            user_ids=np.array(["a", "b"]),
            item_factors=np.zeros((4, F), dtype=np.float32),
            user_factors=np.zeros((2, F), dtype=np.float32),
            regularization=0.1,
            alpha=1.0,
        )
    )
    assert b.als.item_ids.dtype.kind == "U"


def test_manifest_mismatch_is_rejected(tmp_path: Path) -> None:
    _bundle().save(tmp_path / "7")
    path = tmp_path / "7" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["n_items"] = 99
    path.write_text(json.dumps(manifest))
    with pytest.raises(artifacts.ArtifactError, match="n_items"):
        artifacts.ModelBundle.load(tmp_path / "7")
    manifest["format_version"] = 2
    path.write_text(json.dumps(manifest))
    with pytest.raises(artifacts.ArtifactError, match="format_version"):
        artifacts.ModelBundle.load(tmp_path / "7")


def test_minimal_bundle_has_only_als(tmp_path: Path) -> None:
    b = _bundle(itemknn=None, content=None, popular=None, topn=None, extra_files={})
    assert b.algorithms == ("als",)
    b.save(tmp_path / "1")
    loaded = artifacts.ModelBundle.load(tmp_path / "1")
    assert loaded.itemknn is None
    assert loaded.content is None
    assert loaded.topn is None
