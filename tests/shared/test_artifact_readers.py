"""The recommender and the stream processor load a model announced on ``s3://`` (as the prod
overlay stores them), through the one reader ``artifact_store.open_version``, configured the way
a deployment configures it: ``STREAMREC_ARTIFACTS__*`` and ``AWS_*`` in the environment.

The processor's fold-in model interns the model's product ids in Redis, so that half needs a
Redis server (``private_redis``: the test is a ``stack`` test); the recommender half needs none.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from streamrec_dev.synthetic_model import make_bundle
from streamrec_recommender.runtime.model_handle import ModelHandle as ServingHandle
from streamrec_recommender.settings import ServingSettings
from streamrec_shared.artifact_store import ArtifactStore, open_version
from streamrec_shared.artifacts import ModelBundle
from streamrec_shared.events import ModelAnnouncement
from streamrec_shared.settings import RedisSettings
from streamrec_stream_processor.foldin import ModelHandle as FoldHandle
from streamrec_stream_processor.store import RedisStore

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def announced(
    s3_endpoint: str, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ModelAnnouncement:
    """Version 7 saved to ``s3://<bucket>/prod``; readers configured from the environment."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("STREAMREC_ARTIFACTS__CACHE_DIR", str(tmp_path / "cache"))
    store = ArtifactStore.open(f"s3://{bucket}/prod")
    uri = store.save(make_bundle(version=7, n_items=60, n_users=20, factors=8))
    assert uri.startswith("s3://")
    return ModelAnnouncement(version=7, artifact_uri=uri, activated_at=NOW)


def test_open_version_downloads_once_and_keeps_only_the_current_version(
    announced: ModelAnnouncement, bucket: str, tmp_path: Path
) -> None:
    path = open_version(announced.artifact_uri)
    assert path == tmp_path / "cache" / "v7"
    assert ModelBundle.load(path).version == 7
    newer = ArtifactStore.open(f"s3://{bucket}/prod").save(make_bundle(version=8, n_items=10))
    assert open_version(newer) == tmp_path / "cache" / "v8"
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["v8"]


async def test_the_recommender_serves_an_s3_model(announced: ModelAnnouncement) -> None:
    handle = ServingHandle(ServingSettings())
    await handle.on_model(announced)
    assert handle.current is not None
    assert handle.current.version == 7
    assert handle.current.n_items == 60


async def test_the_processor_folds_into_an_s3_model(
    announced: ModelAnnouncement, private_redis: str
) -> None:
    store = RedisStore(
        RedisSettings(url=SecretStr(private_redis)), timeout_s=5.0, trending_half_life_s=86_400.0
    )
    await store.start()
    try:
        handle = FoldHandle(store)
        await handle.load(announced)
    finally:
        await store.stop()
    assert handle.current is not None
    assert handle.current.version == 7
    assert handle.current.factors == 8
