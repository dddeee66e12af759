"""docker-compose.yml: valid against the Compose specification's JSON Schema (vendored, see
schemas/README.md), Kafka in KRaft mode, every service built from the one Dockerfile with the
same arguments as docker-bake.hcl, the backing services healthy before the services start."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SCHEMA = HERE / "schemas" / "compose-spec.json"
SCHEMA_SHA256 = "56bab44c85c0ce8affb74474950293f37d510673283a243bcd7eeadb900fa35c"
SERVICES = {"ingest": 8000, "recommender": 8001, "trainer": 8002, "stream-processor": 8003}
BACKING = ("kafka", "redis", "postgres")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


def test_schema_is_the_vendored_one() -> None:
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256


def test_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = yaml.safe_load(SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)  # its $schema (draft 2019-09)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_schema_check_catches_mistakes(compose: dict[str, Any]) -> None:
    schema = yaml.safe_load(SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)  # its $schema (draft 2019-09)
    broken = {**compose, "services": {**compose["services"]}}
    broken["services"]["ingest"] = {**compose["services"]["ingest"], "helthcheck": {}}
    assert list(validator.iter_errors(broken))


def test_every_part_is_there(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {*BACKING, *SERVICES, "web"}
    env = compose["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller", "KRaft: no ZooKeeper"
    assert "zookeeper" not in str(compose).lower()


@pytest.mark.parametrize(("service", "port"), SERVICES.items())
def test_services_build_from_the_template(compose: dict[str, Any], service: str, port: int) -> None:
    spec = compose["services"][service]
    assert spec["build"]["context"] == "."
    assert spec["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    assert spec["build"]["args"] == {"SERVICE": service, "PORT": str(port)}
    assert f"{port}:{port}" in spec["ports"]
    for backing in BACKING:
        assert spec["depends_on"][backing]["condition"] == "service_healthy"
        assert "healthcheck" in compose["services"][backing]
    env = spec["environment"]
    assert env["STREAMREC_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["STREAMREC_POSTGRES__DSN"].startswith("postgresql://")


def test_web_app_builds_from_its_own_dockerfile(compose: dict[str, Any]) -> None:
    build = compose["services"]["web"]["build"]
    assert (build["context"], build["dockerfile"]) == ("services/web", "Dockerfile")
