"""The environment each Deployment gets is read by its service's settings.

A misspelt ``STREAMREC_<GROUP>__<KEY>`` stops a service at start (``streamrec_shared.settings.
Group``), but a misspelt group (``STREAMREC_TRAINNG__...``) is ignored like another service's:
every name in a rendered overlay must map to a field of the service's settings class, and the
values (with dev's Secrets) must validate, before anything is deployed.
"""

from __future__ import annotations

import base64
import importlib
import os
from typing import Any, cast

import pytest

from streamrec_shared.settings import ServiceSettings

from ..settings_paths import is_setting

Manifest = dict[str, Any]
OVERLAYS = ("dev", "prod", "prod-keda")
PACKAGES = {
    "ingest": "streamrec_ingest",
    "recommender": "streamrec_recommender",
    "trainer": "streamrec_trainer",
    "stream-processor": "streamrec_stream_processor",
}
# Not settings of ours, read by libraries: OpenBLAS threads, S3 credentials.
OTHER_VARIABLES = {"OPENBLAS_NUM_THREADS"}


def settings_class(service: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"{PACKAGES[service]}.settings")
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, ServiceSettings)
        and value is not ServiceSettings
    ]
    assert len(found) == 1, f"{service}: expected one ServiceSettings subclass, got {found}"
    return found[0]


def find(objects: list[Manifest], kind: str, name: str) -> Manifest:
    (obj,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def secret_data(secret: Manifest) -> dict[str, str]:
    """A Secret's keys and values, from ``stringData`` and (base64) ``data``: generated ones
    (``secretGenerator``) have only ``data``."""
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    return {**data, **(secret.get("stringData") or {})}


def environment(objects: list[Manifest], service: str) -> dict[str, str | None]:
    """Variable -> value (None when it comes from a Secret the overlay does not contain)."""
    deployment = find(objects, "Deployment", service)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    secrets = {o["metadata"]["name"]: secret_data(o) for o in objects if o["kind"] == "Secret"}
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(find(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "secretKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets.get(ref["name"], {}).get(ref["key"])
    return env


@pytest.mark.parametrize("service", PACKAGES)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_is_a_setting(
    overlay: str, service: str, rendered: dict[str, list[Manifest]]
) -> None:
    cls = settings_class(service)
    unknown = []
    for name in environment(rendered[overlay], service):
        if name in OTHER_VARIABLES:
            continue
        assert name.startswith("STREAMREC_"), name
        if not is_setting(cls, name):
            unknown.append(name)
    assert not unknown, f"{cls.__name__} has no setting for {unknown}"


# Secrets an operator writes in the cluster (not in the overlay) whose presence settings check.
SECRET_STAND_INS = {
    "STREAMREC_KAFKA__SASL_PASSWORD": "written-by-strimzi-user-operator",
    "STREAMREC_REDIS__PASSWORD": "created-by-the-operator/with:url@characters",
}


@pytest.mark.parametrize("service", PACKAGES)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_settings_load_from_the_environment(
    overlay: str, service: str, rendered: dict[str, list[Manifest]], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = environment(rendered[overlay], service)
    for name in list(os.environ):
        if name.startswith("STREAMREC_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        value = value if value is not None else SECRET_STAND_INS.get(name)
        if value is not None:
            monkeypatch.setenv(name, value)
    settings = settings_class(service)()
    http = cast(Any, settings).http  # every service adds its own http group (its port)
    expected_port = {"ingest": 8000, "recommender": 8001, "trainer": 8002, "stream-processor": 8003}
    assert http.port == expected_port[service]
    assert http.host == "0.0.0.0"
    assert settings.kafka.enable_idempotence is True
    if overlay in ("prod", "prod-keda"):  # Strimzi's TLS listener, SCRAM as KafkaUser "streamrec"
        assert settings.kafka.security_protocol == "SASL_SSL"
        assert settings.kafka.sasl_username == "streamrec"
        assert str(settings.kafka.ssl_cafile) == "/etc/streamrec/kafka-ca/ca.crt"
        # Redis ACL user "streamrec" (patches/redis.yaml), its password percent-encoded
        assert settings.redis.username == "streamrec"
        assert settings.redis.url.get_secret_value() == (
            "redis://streamrec:created-by-the-operator%2Fwith%3Aurl%40characters@redis:6379/0"
        )
    else:
        assert settings.redis.password is None
    if overlay == "dev" and service != "stream-processor":
        assert settings.auth.api_keys, "dev API keys parsed from the Secret"
