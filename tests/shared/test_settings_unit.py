"""Settings from the environment: a key a group does not have (a misspelt or renamed
``STREAMREC_<GROUP>__<KEY>``) stops the service naming it instead of being ignored; groups other
services own, and ``STREAMREC_`` variables that are not settings, are still ignored; every such
variable the docs, manifests and the local stack name is a setting of some service."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from streamrec_ingest.settings import IngestSettings
from streamrec_recommender.settings import RecommenderSettings
from streamrec_shared.settings import Group, ServiceSettings
from streamrec_stream_processor.settings import ProcessorSettings
from streamrec_trainer.settings import TrainerSettings

from ..settings_paths import is_setting, nested_models

SERVICES: list[type[ServiceSettings]] = [
    IngestSettings,
    ProcessorSettings,
    RecommenderSettings,
    TrainerSettings,
]


@pytest.mark.parametrize(
    ("settings", "variable", "field"),
    [
        # the name docs/api.md once gave: the keys would have been ignored, writes left open
        (TrainerSettings, "STREAMREC_AUTH__KEYS", "auth.keys"),
        (IngestSettings, "STREAMREC_KAFKA__BOOTSTRAP_SERVER", "kafka.bootstrap_server"),
        # names from before the consumer and ANN knobs became groups of their own
        (ProcessorSettings, "STREAMREC_PROCESSOR__FETCH_MIN_BYTES", "processor.fetch_min_bytes"),
        (
            RecommenderSettings,
            "STREAMREC_RECOMMENDER__ANN_TARGET_RECALL",
            "recommender.ann_target_recall",
        ),
    ],
)
def test_a_key_the_group_does_not_have_stops_the_service_naming_it(
    monkeypatch: pytest.MonkeyPatch, settings: type[ServiceSettings], variable: str, field: str
) -> None:
    monkeypatch.setenv(variable, "1")
    with pytest.raises(ValidationError, match=field.replace(".", r"\.")) as raised:
        settings()
    assert "Extra inputs are not permitted" in str(raised.value)


def test_the_right_names_are_read_and_other_services_groups_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAMREC_PROCESSOR__CONSUMER__FETCH_MIN_BYTES", "2048")
    monkeypatch.setenv("STREAMREC_RECOMMENDER__ANN__TARGET_RECALL", "0.9")
    monkeypatch.setenv("STREAMREC_AUTH__API_KEYS", "[]")
    monkeypatch.setenv("STREAMREC_REDIS_BIN", "/usr/bin/redis-server")  # not a setting
    consumer = ProcessorSettings().processor.consumer
    # a group built from the environment starts from its class's defaults: the processor's
    assert (consumer.fetch_min_bytes, consumer.fetch_max_wait_ms) == (2048, 50)
    assert consumer.group_id == "streamrec-stream-processor"
    ann = RecommenderSettings().recommender.ann
    assert (ann.target_recall, ann.connectivity) == (0.9, 16)
    # each service ignores the other's group (one environment may serve every service)
    assert TrainerSettings().auth.api_keys == []
    assert IngestSettings().auth.api_keys == []


def test_a_variable_keeps_the_rest_of_the_group_the_service_declares(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the trainer's and the processor's http groups are HttpSettings(port=...): setting
    # another key of it once moved them to the class's port 8000 (ingest's)
    monkeypatch.setenv("STREAMREC_HTTP__WORKERS", "3")
    ports = {s.__name__: (http.port, http.workers) for s in SERVICES for http in [s().http]}
    assert ports == {
        "IngestSettings": (8000, 3),
        "ProcessorSettings": (8003, 3),
        "RecommenderSettings": (8001, 3),
        "TrainerSettings": (8002, 3),
    }


@pytest.mark.parametrize("settings", SERVICES, ids=lambda s: s.__name__)
def test_every_group_refuses_unknown_keys(settings: type[ServiceSettings]) -> None:
    groups = nested_models(settings)
    assert len(groups) >= 9  # kafka, redis, postgres, auth (+ its keys), http, ...
    assert not [g for g in groups if issubclass(g, BaseSettings)]
    assert [g.__name__ for g in groups if not issubclass(g, Group)] == []


ROOT = Path(__file__).resolve().parents[2]
NAMED_IN = [
    "README.md",
    "Makefile",
    "docker-compose.yml",
    "docs",
    "deploy",
    "services",
    "tools/dev",
]
RENAMED = {"STREAMREC_PROCESSOR__FETCH_MIN_BYTES"}
"""Old names the README mentions as such (they must stay unknown)."""


def _named_variables() -> dict[str, set[str]]:
    """``STREAMREC_<GROUP>__...`` names in docs, manifests, Dockerfiles and dev tooling -> where."""
    found: dict[str, set[str]] = {}
    for entry in NAMED_IN:
        top = ROOT / entry
        for path in [top] if top.is_file() else sorted(top.rglob("*")):
            if not path.is_file() or {"node_modules", "dist", "results"} & set(path.parts):
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            for name in re.findall(r"STREAMREC_[A-Z0-9_]+?__[A-Z0-9_]*[A-Z0-9]", text):
                found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_variable_the_docs_and_manifests_name_is_a_setting() -> None:
    named = _named_variables()
    assert "STREAMREC_KAFKA__BOOTSTRAP_SERVERS" in named  # the scan reads what it should
    unknown = {
        name: sorted(where)
        for name, where in named.items()
        if name not in RENAMED and not any(is_setting(s, name) for s in SERVICES)
    }
    assert unknown == {}
    for name in RENAMED:
        assert not any(is_setting(s, name) for s in SERVICES)
