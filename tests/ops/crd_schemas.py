"""JSON Schemas for the custom resources in deploy/k8s, vendored in ``schemas/`` (offline).

- Strimzi (Kafka, KafkaNodePool, KafkaTopic, KafkaUser) and CloudNativePG (Cluster): subset schemas
  written after the upstream CRDs.
- KEDA (ScaledObject) and Prometheus Operator (ServiceMonitor, PrometheusRule): generated from
  the pydantic models that ``cloudcoil-models-*`` build from the upstream CRDs.

Every object schema that lists its properties is closed (``additionalProperties: false``), so a
misspelt field fails as the API server would reject it. See ``schemas/README.md``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_DIR = Path(__file__).parent / "schemas"

SCHEMAS: dict[tuple[str, str], str] = {
    ("kafka.strimzi.io/v1beta2", "Kafka"): "strimzi-kafka-v1beta2.yaml",
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"): "strimzi-kafkanodepool-v1beta2.yaml",
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): "strimzi-kafkatopic-v1beta2.yaml",
    ("kafka.strimzi.io/v1beta2", "KafkaUser"): "strimzi-kafkauser-v1beta2.yaml",
    ("postgresql.cnpg.io/v1", "Cluster"): "cnpg-cluster-v1.yaml",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobject-v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring-servicemonitor-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring-prometheusrule-v1.json",
}


def known_custom_resources() -> set[tuple[str, str]]:
    """(apiVersion, kind) pairs that have a schema here."""
    return set(SCHEMAS)


@functools.cache
def validator(api_version: str, kind: str) -> Any:
    """A jsonschema validator for one custom resource type (KeyError if there is none)."""
    path = SCHEMA_DIR / SCHEMAS[(api_version, kind)]
    text = path.read_text()
    schema = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def errors(obj: dict[str, Any]) -> list[str]:
    """Schema violations of a custom resource, as readable lines (empty when valid)."""
    check = validator(str(obj["apiVersion"]), str(obj["kind"]))
    found = sorted(check.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in found]
