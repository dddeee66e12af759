"""The artifact store: file:// and s3:// (a real S3 API: moto's server on 127.0.0.1).

Covered: round trips through ``save`` / ``local_copy`` / ``ModelBundle.load``; readers never
see a partial version (manifest uploaded last, deleted first; a failed upload stays invisible);
garbage collection keeps the newest versions and protected ones and never touches an upload in
progress; ``delete`` refuses URIs outside the store; the reader cache verifies and reuses.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from streamrec_shared.artifact_store import (
    ArtifactStore,
    LocalArtifactStore,
    S3ArtifactStore,
    local_copy,
    prune_cache,
    s3_client_for,
)
from streamrec_shared.artifacts import (
    MANIFEST_NAME,
    ArtifactError,
    ModelBundle,
)
from streamrec_shared.settings import ArtifactSettings

from ..bundles import tiny_bundle

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client


def make_bundle(version: int) -> ModelBundle:
    """A small valid bundle whose factors depend on ``version``."""
    return tiny_bundle(
        version=version,
        item_ids=["p1", "p2", "p3"],
        user_ids=["alice", "bob"],
        topn_users=["bob"],
        topn_items=[[2, 0]],
        topn_scores=[[0.9, 0.5]],
        dim=4,
        seed=version,
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        window=(1_291_191_960, 1_323_433_800),
        alpha=2.0,
        metrics={"ndcg@20": 0.1 * version},
    )


def assert_same(loaded: ModelBundle, original: ModelBundle) -> None:
    assert loaded.version == original.version
    assert loaded.metrics == original.metrics
    np.testing.assert_array_equal(loaded.als.item_factors, original.als.item_factors)
    np.testing.assert_array_equal(loaded.als.user_ids, original.als.user_ids)
    assert loaded.topn is not None
    assert original.topn is not None
    np.testing.assert_array_equal(loaded.topn.items, original.topn.items)


# --------------------------------------------------------------------------------- file://


def test_file_round_trip(tmp_path: Path) -> None:
    store = ArtifactStore.open((tmp_path / "artifacts").as_uri())
    assert isinstance(store, LocalArtifactStore)
    assert store.versions() == []
    bundle = make_bundle(1)
    uri = store.save(bundle)
    assert uri == (tmp_path / "artifacts" / "v1").as_uri() == store.uri(1)
    assert store.versions() == [1]
    path = local_copy(uri, tmp_path / "unused-cache")
    assert path == tmp_path / "artifacts" / "v1"
    assert not (tmp_path / "unused-cache").exists()
    assert_same(ModelBundle.load(path), bundle)


def test_file_save_replaces_a_failed_attempt(tmp_path: Path) -> None:
    store = ArtifactStore.open(tmp_path.as_uri())
    store.save(make_bundle(4))
    again = make_bundle(4)
    object.__setattr__(again, "metrics", {"ndcg@20": 0.99})
    uri = store.save(again)
    assert ModelBundle.load(local_copy(uri, tmp_path)).metrics == {"ndcg@20": 0.99}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v4"]


def test_file_gc_keeps_newest_and_protected(tmp_path: Path) -> None:
    store = ArtifactStore.open(tmp_path.as_uri())
    for version in range(1, 6):
        store.save(make_bundle(version))
    (tmp_path / "v0.partial-crashed").mkdir()  # an old interrupted save
    (tmp_path / "v9.partial-inflight").mkdir()  # a save in progress right now
    (tmp_path / "notes").mkdir()  # not ours

    assert store.collect_garbage(retention=2, protect={1}) == [0, 2, 3]

    assert store.versions() == [1, 4, 5]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["notes", "v1", "v4", "v5", "v9.partial-inflight"]
    assert store.collect_garbage(retention=2, protect={1}) == []
    with pytest.raises(ValueError, match="retention"):
        store.collect_garbage(retention=0)


def test_file_delete_only_own_versions(tmp_path: Path) -> None:
    base = tmp_path / "artifacts"
    store = ArtifactStore.open(base.as_uri())
    uri = store.save(make_bundle(2))
    elsewhere = tmp_path / "elsewhere" / "v2"
    elsewhere.mkdir(parents=True)

    assert store.delete(elsewhere.as_uri()) is False
    assert store.delete(base.as_uri()) is False
    assert store.delete((base / "v2" / "als.npz").as_uri()) is False
    assert store.delete("s3://bucket/v2") is False
    assert elsewhere.exists()
    assert store.versions() == [2]

    assert store.delete(uri) is True
    assert store.versions() == []
    assert list(base.iterdir()) == []
    with pytest.raises(FileNotFoundError):
        local_copy(uri, tmp_path)
    assert store.delete(uri) is True  # idempotent: GC may retry


def test_unsupported_schemes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="scheme"):
        ArtifactStore.open("gs://bucket/models")
    with pytest.raises(ValueError, match="scheme"):
        local_copy("https://example.invalid/v1", tmp_path)


def test_settings_defaults_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from streamrec_trainer.settings import TrainerSettings

    monkeypatch.setenv("STREAMREC_ARTIFACTS__URI", "s3://models/prod")
    monkeypatch.setenv("STREAMREC_ARTIFACTS__ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("STREAMREC_ARTIFACTS__CACHE_DIR", str(tmp_path))
    artifacts = TrainerSettings().artifacts
    assert artifacts.endpoint_url == "http://minio:9000"
    assert artifacts.cache_dir == tmp_path
    assert ArtifactSettings().endpoint_url is None
    assert ArtifactSettings().cache_dir.is_absolute()


def test_prune_cache(tmp_path: Path) -> None:
    for name in ("v1", "v2", "v3", "v4.partial-fresh", "v0.partial-old", "v2.stale-x", "other"):
        (tmp_path / name).mkdir()
    old = tmp_path / "v0.partial-old"
    os.utime(old, (old.stat().st_atime - 7200, old.stat().st_mtime - 7200))
    removed = prune_cache(tmp_path, keep=[tmp_path / "v3"])
    assert [p.name for p in removed] == ["v0.partial-old", "v1", "v2", "v2.stale-x"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "v3", "v4.partial-fresh"]


# ----------------------------------------------------------------------------------- s3://


def keys(client: S3Client, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_s3_round_trip_and_reader_cache(s3_endpoint: str, bucket: str, tmp_path: Path) -> None:
    store = ArtifactStore.from_settings(
        ArtifactSettings(uri=f"s3://{bucket}/models/prod/", endpoint_url=s3_endpoint)
    )
    assert isinstance(store, S3ArtifactStore)
    bundle = make_bundle(3)
    uri = store.save(bundle)
    assert uri == f"s3://{bucket}/models/prod/v3" == store.uri(3)
    assert store.versions() == [3]
    assert keys(store.client, bucket) == [
        "models/prod/v3/als.npz",
        "models/prod/v3/manifest.json",
        "models/prod/v3/topn.npz",
    ]

    reader = s3_client_for(endpoint_url=s3_endpoint)
    gets: list[str] = []
    reader.meta.events.register(
        "before-parameter-build.s3.GetObject", lambda params, **_: gets.append(params["Key"])
    )
    cache = tmp_path / "cache"
    path = local_copy(uri, cache, s3_client=reader)
    assert path == cache / "v3"
    assert_same(ModelBundle.load(path), bundle)
    assert sorted(p.name for p in cache.iterdir()) == ["v3"]  # no staging left behind
    downloads = len(gets)
    assert downloads >= 3  # manifest + two files

    assert local_copy(uri, cache, s3_client=reader) == path  # cached: no download
    assert len(gets) == downloads


def test_s3_endpoint_from_aws_env(
    s3_endpoint: str, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    store = ArtifactStore.open(f"s3://{bucket}")
    uri = store.save(make_bundle(1))
    assert uri == f"s3://{bucket}/v1"
    assert ModelBundle.load(local_copy(uri, tmp_path)).version == 1


def test_s3_manifest_last_partial_upload_invisible(
    s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    writer = s3_client_for(endpoint_url=s3_endpoint)
    store = S3ArtifactStore(f"s3://{bucket}/m", client=writer)
    reader = S3ArtifactStore(f"s3://{bucket}/m", client=s3_client_for(endpoint_url=s3_endpoint))
    uploaded: list[str] = []
    seen_mid_upload: list[Any] = []

    def before_put(params: dict[str, Any], **_: Any) -> None:
        key = params["Key"]
        if key.endswith(MANIFEST_NAME):  # every data file is up, the manifest is not
            seen_mid_upload.append(sorted(k for k in keys(writer, bucket)))
            seen_mid_upload.append(reader.versions())
            try:
                reader.local_copy(reader.uri(5), tmp_path / "cache")
            except FileNotFoundError as exc:
                seen_mid_upload.append(type(exc).__name__)
        uploaded.append(key)

    writer.meta.events.register("before-parameter-build.s3.PutObject", before_put)
    store.save(make_bundle(5))

    assert uploaded[-1] == f"m/v5/{MANIFEST_NAME}"
    assert sorted(uploaded[:-1]) == ["m/v5/als.npz", "m/v5/topn.npz"]
    assert seen_mid_upload == [["m/v5/als.npz", "m/v5/topn.npz"], [], "FileNotFoundError"]
    assert not (tmp_path / "cache" / "v5").exists()
    assert reader.versions() == [5]


def test_s3_failed_upload_invisible_and_collected(
    s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    writer = s3_client_for(endpoint_url=s3_endpoint)
    store = S3ArtifactStore(f"s3://{bucket}", client=writer)

    def fail_manifest(params: dict[str, Any], **_: Any) -> None:
        if params["Key"].endswith(MANIFEST_NAME):
            raise ConnectionError("network gone before the manifest")

    writer.meta.events.register(
        "before-parameter-build.s3.PutObject", fail_manifest, unique_id="fail"
    )
    with pytest.raises(ConnectionError):
        store.save(make_bundle(1))
    writer.meta.events.unregister("before-parameter-build.s3.PutObject", unique_id="fail")
    assert store.versions() == []
    assert keys(writer, bucket) == []  # cleaned up after the failure
    with pytest.raises(FileNotFoundError):
        local_copy(store.uri(1), tmp_path, s3_client=writer)

    # a crashed uploader could not clean up: its files stay invisible until GC removes them
    writer.put_object(Bucket=bucket, Key="v1/als.npz", Body=b"half")
    writer.put_object(Bucket=bucket, Key="v9/als.npz", Body=b"uploading now")
    writer.put_object(Bucket=bucket, Key="README", Body=b"not a version")
    for version in (2, 3, 4):
        store.save(make_bundle(version))
    assert store.versions() == [2, 3, 4]
    assert store.collect_garbage(retention=2) == [1, 2]
    assert store.versions() == [3, 4]
    assert keys(writer, bucket) == [
        "README",
        "v3/als.npz",
        "v3/manifest.json",
        "v3/topn.npz",
        "v4/als.npz",
        "v4/manifest.json",
        "v4/topn.npz",
        "v9/als.npz",
    ]


def test_s3_delete_removes_manifest_first(s3_endpoint: str, bucket: str) -> None:
    writer = s3_client_for(endpoint_url=s3_endpoint)
    store = S3ArtifactStore(f"s3://{bucket}/p", client=writer)
    other = S3ArtifactStore(f"s3://{bucket}/p2", client=writer)
    uri = store.save(make_bundle(7))
    other_uri = other.save(make_bundle(7))
    uri10 = store.save(make_bundle(10))  # v1 must not match v10 and so on
    visible_at_bulk_delete: list[list[int]] = []

    def before_bulk_delete(**_: Any) -> None:
        visible_at_bulk_delete.append(store.versions())

    writer.meta.events.register("before-call.s3.DeleteObjects", before_bulk_delete)
    assert store.delete(other_uri) is False
    assert store.delete(f"s3://{bucket}/p/v7/als.npz") is False
    assert store.delete("s3://elsewhere/p/v7") is False
    assert store.delete(uri) is True
    assert visible_at_bulk_delete == [[10]]  # the manifest was already gone
    assert store.versions() == [10]
    assert other.versions() == [7]
    assert [k for k in keys(writer, bucket) if k.startswith("p/")] == [
        "p/v10/als.npz",
        "p/v10/manifest.json",
        "p/v10/topn.npz",
    ]
    assert store.owns(uri10) == 10


def test_s3_local_copy_verifies_and_replaces_stale(
    s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    client = s3_client_for(endpoint_url=s3_endpoint)
    store = S3ArtifactStore(f"s3://{bucket}/a", client=client)
    other = S3ArtifactStore(f"s3://{bucket}/b", client=client)
    cache = tmp_path / "cache"
    uri_a = store.save(make_bundle(2))
    uri_b = other.save(make_bundle(20))
    client.copy_object(  # same version number, other store: a different model
        Bucket=bucket, Key="b/v2/als.npz", CopySource={"Bucket": bucket, "Key": "b/v20/als.npz"}
    )
    client.copy_object(
        Bucket=bucket, Key="b/v2/topn.npz", CopySource={"Bucket": bucket, "Key": "b/v20/topn.npz"}
    )
    manifest = client.get_object(Bucket=bucket, Key="b/v20/manifest.json")["Body"].read()
    client.put_object(Bucket=bucket, Key="b/v2/manifest.json", Body=manifest)
    del uri_b

    path = local_copy(uri_a, cache, s3_client=client)
    assert ModelBundle.load(path).version == 2
    # the cached v2 came from store a: store b's v2 is downloaded again, not served from cache
    path_b = local_copy(f"s3://{bucket}/b/v2", cache, s3_client=client)
    assert path_b == path
    assert ModelBundle.load(path_b).version == 20

    # corrupt file: refused, nothing cached, no staging left
    client.put_object(Bucket=bucket, Key="a/v2/als.npz", Body=b"not the file the manifest hashed")
    with pytest.raises(ArtifactError, match="sha256"):
        local_copy(uri_a, cache, s3_client=client)
    assert sorted(p.name for p in cache.iterdir()) == ["v2"]
    assert ModelBundle.load(cache / "v2").version == 20

    # a manifest naming a path outside the version is refused before any download
    client.put_object(
        Bucket=bucket, Key="a/v3/manifest.json", Body=b'{"files": {"../../etc/x.npz": "0"}}'
    )
    with pytest.raises(ArtifactError, match="unexpected file name"):
        local_copy(f"s3://{bucket}/a/v3", cache, s3_client=client)
    assert sorted(p.name for p in cache.iterdir()) == ["v2"]
