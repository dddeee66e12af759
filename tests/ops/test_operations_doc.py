"""docs/operations.md says what an SRE needs, and agrees with the manifests."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

Manifest = dict[str, Any]
K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
DOC = (K8S.parents[1] / "docs" / "operations.md").read_text()
OVERLAYS = ("dev", "prod", "prod-keda")
SERVICES = ("ingest", "recommender", "stream-processor", "trainer")


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", DOC, re.M | re.S)
    assert match, f"no section '## {title}'"
    return match.group(1)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_has_its_apply_command(overlay: str) -> None:
    assert f"kubectl apply -k deploy/k8s/overlays/{overlay}" in DOC


def test_scaling_covers_every_service_and_the_partition_rule() -> None:
    text = section("Scaling")
    for service in SERVICES:
        assert f"**{service}**" in text, service
    assert "replicas <= partitions of events.v1" in text
    assert "KEDA" in text


def test_model_rollback() -> None:
    text = section("Rolling a model back")
    assert "POST /v1/models/{version}/activate" in text
    assert re.search(r"curl .*-X POST -H \"X-API-Key: \$ADMIN_KEY\"", text)
    assert "/v1/models/41/activate" in text
    assert "admin" in text


def test_secrets_not_in_git_are_documented(rendered: dict[str, list[Manifest]]) -> None:
    text = section("Deploying prod")
    in_render = {o["metadata"]["name"] for o in rendered["prod"] if o["kind"] == "Secret"}
    assert not in_render, "prod commits no Secret"
    for name in ("streamrec-api-keys", "streamrec-artifacts-s3", "streamrec-pg-app"):
        assert f"`{name}`" in text, name
    for name in ("streamrec-api-keys", "streamrec-feedback", "streamrec-redis"):
        assert f"create secret generic {name}" in text, name
    assert "create secret generic streamrec-artifacts-s3" in text


def test_redis_policy_is_justified() -> None:
    text = DOC.split("### Redis", 1)[1]
    assert "allkeys-lru" in text
    assert "noeviction" in text
    assert "volatile-" in text


def test_anchor_links_resolve() -> None:
    headings = re.findall(r"^#+ (.+)$", DOC, re.M)
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}
    for link in re.findall(r"\]\(#([^)]+)\)", DOC):
        assert link in anchors, link
