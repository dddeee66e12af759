"""How the rendered objects fit together: selectors, references, autoscaling, network policy,
Kafka topics and partitions, Redis and Postgres wiring."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from streamrec_shared.settings import AuthSettings
from streamrec_shared.topics import topic_specs

Manifest = dict[str, Any]
OVERLAYS = ("dev", "prod", "prod-keda")
SERVICES = ("ingest", "recommender", "trainer", "stream-processor")
PUBLIC = ("ingest", "recommender")
HPA_SERVICES = ("ingest", "recommender")
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
# Secrets a prod operator creates (documented in docs/operations.md); CloudNativePG creates
# "<cluster>-app" itself.
EXTERNAL_SECRETS = {
    "streamrec-api-keys",
    "streamrec-artifacts-s3",
    "streamrec-feedback",
    "streamrec-redis",
}
NAMESPACES = {"dev": "streamrec-dev", "prod": "streamrec", "prod-keda": "streamrec"}
# Who may connect to each dependency: the services that import its client library.
DEPENDENCY_CLIENTS = {
    "redis": {"ingest", "stream-processor", "recommender", "trainer"},
    "kafka": {"ingest", "stream-processor", "recommender", "trainer"},
    "postgres": {"ingest", "recommender", "trainer"},
}
ADAPTER_METRIC = "streamrec_http_requests_per_second"


def objects_of(objects: list[Manifest], kind: str) -> list[Manifest]:
    return [o for o in objects if o["kind"] == kind]


def find(objects: list[Manifest], kind: str, name: str) -> Manifest:
    hits = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} found"
    return hits[0]


def common_config(objects: list[Manifest]) -> dict[str, str]:
    data: dict[str, str] = find(objects, "ConfigMap", "streamrec-common")["data"]
    return data


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def pods(objects: list[Manifest]) -> Iterator[tuple[str, dict[str, str]]]:
    """(workload name, pod template labels) of every workload."""
    for obj in objects:
        if obj["kind"] in WORKLOAD_KINDS:
            yield obj["metadata"]["name"], obj["spec"]["template"]["metadata"]["labels"]


def matching_workloads(objects: list[Manifest], selector: dict[str, Any]) -> set[str]:
    return {name for name, labels in pods(objects) if selects(selector, labels)}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_select_one_workload_and_named_port(
    overlay: str, rendered: dict[str, list[Manifest]]
) -> None:
    objects = rendered[overlay]
    for svc in objects_of(objects, "Service"):
        selected = matching_workloads(objects, {"matchLabels": svc["spec"]["selector"]})
        assert len(selected) == 1, f"Service {svc['metadata']['name']} selects {selected}"
        (workload,) = selected
        target = next(
            o for o in objects if o["kind"] in WORKLOAD_KINDS and o["metadata"]["name"] == workload
        )
        containers = target["spec"]["template"]["spec"]["containers"]
        names = {p["name"] for c in containers for p in c["ports"]}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in names, (svc["metadata"]["name"], port)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_exist(overlay: str, rendered: dict[str, list[Manifest]]) -> None:
    """ConfigMaps, Secrets, PVCs and ServiceAccounts a pod refers to exist (or, for prod
    Secrets, are created by CloudNativePG or by the operator as docs/operations.md says)."""
    objects = rendered[overlay]
    have = {(o["kind"], o["metadata"]["name"]) for o in objects}
    generated = {f"{c['metadata']['name']}-app" for c in objects_of(objects, "Cluster")}
    # Strimzi writes the cluster CA's certificate and each KafkaUser's credentials
    generated |= {f"{k['metadata']['name']}-cluster-ca-cert" for k in objects_of(objects, "Kafka")}
    generated |= {u["metadata"]["name"] for u in objects_of(objects, "KafkaUser")}
    external = EXTERNAL_SECRETS | generated if overlay != "dev" else set()
    for obj in objects:
        if obj["kind"] not in WORKLOAD_KINDS:
            continue
        spec = obj["spec"]["template"]["spec"]
        name = obj["metadata"]["name"]
        assert ("ServiceAccount", spec["serviceAccountName"]) in have, name
        refs: list[tuple[str, str]] = []
        for v in spec.get("volumes", []):
            if "configMap" in v:
                refs.append(("ConfigMap", v["configMap"]["name"]))
            if "secret" in v:
                refs.append(("Secret", v["secret"]["secretName"]))
            if "persistentVolumeClaim" in v:
                refs.append(("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]))
        for c in spec["containers"]:
            for e in c.get("envFrom", []):
                if "configMapRef" in e:
                    refs.append(("ConfigMap", e["configMapRef"]["name"]))
                if "secretRef" in e:
                    refs.append(("Secret", e["secretRef"]["name"]))
            for e in c.get("env", []):
                source = e.get("valueFrom", {})
                if "configMapKeyRef" in source:
                    refs.append(("ConfigMap", source["configMapKeyRef"]["name"]))
                if "secretKeyRef" in source:
                    refs.append(("Secret", source["secretKeyRef"]["name"]))
        for kind, ref in refs:
            ok = (kind, ref) in have or (kind == "Secret" and ref in external)
            assert ok, f"{overlay}: {name} refers to missing {kind} {ref}"


def secret_data(secret: Manifest) -> dict[str, str]:
    """A generated Secret's keys and (decoded) values."""
    assert "stringData" not in secret, secret["metadata"]["name"]
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_dev_secret_keys(rendered: dict[str, list[Manifest]]) -> None:
    """dev's Secrets come from the overlay's secretGenerator (names without a hash: the base
    manifests refer to them), and every credential in them says it is a dev value."""
    objects = rendered["dev"]
    pg = secret_data(find(objects, "Secret", "streamrec-pg-app"))
    assert pg["uri"] == (
        f"postgresql://{pg['username']}:{pg['password']}@postgres:5432/{pg['dbname']}"
    )
    assert pg["password"].startswith("dev-only-")
    feedback = secret_data(find(objects, "Secret", "streamrec-feedback"))
    assert feedback["STREAMREC_FEEDBACK__REC_ID_KEY"].startswith("dev-only-")
    keys = secret_data(find(objects, "Secret", "streamrec-api-keys"))
    auth = AuthSettings(api_keys=json.loads(keys["STREAMREC_AUTH__API_KEYS"]))
    admin = auth.find("dev-admin-key")
    assert admin is not None
    assert "admin" in admin.scopes
    assert all(key.name.startswith("dev-") for key in auth.api_keys)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaling(overlay: str, rendered: dict[str, list[Manifest]]) -> None:
    objects = rendered[overlay]
    hpas = {
        h["spec"]["scaleTargetRef"]["name"]: h
        for h in objects_of(objects, "HorizontalPodAutoscaler")
    }
    assert set(hpas) == set(HPA_SERVICES)
    for name, hpa in hpas.items():
        target = find(objects, "Deployment", name)
        assert "replicas" not in target["spec"], f"{name}: HPA-managed, no fixed spec.replicas"
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
        assert metrics["Resource"]["resource"]["name"] == "cpu"
        if overlay == "dev":
            assert set(metrics) == {"Resource"}
        else:
            assert hpa["spec"]["minReplicas"] >= 2, "prod API pods: at least two"
            pods_metric = metrics["Pods"]["pods"]["metric"]
            assert pods_metric["name"] == ADAPTER_METRIC
            assert pods_metric["selector"]["matchLabels"] == {"service": name}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budgets(overlay: str, rendered: dict[str, list[Manifest]]) -> None:
    objects = rendered[overlay]
    covered = set()
    for pdb in objects_of(objects, "PodDisruptionBudget"):
        (workload,) = matching_workloads(objects, pdb["spec"]["selector"])
        covered.add(workload)
        # maxUnavailable never blocks a node drain (minAvailable >= replicas would).
        assert pdb["spec"].get("maxUnavailable") == 1
        assert "minAvailable" not in pdb["spec"]
    assert covered == {"ingest", "recommender", "stream-processor"}


def test_stream_processor_replicas_within_partitions(rendered: dict[str, list[Manifest]]) -> None:
    for overlay in OVERLAYS:
        objects = rendered[overlay]
        partitions = int(common_config(objects)["STREAMREC_KAFKA__EVENTS_PARTITIONS"])
        topics = [
            t for t in objects_of(objects, "KafkaTopic") if t["spec"]["topicName"] == "events.v1"
        ]
        if topics:
            assert topics[0]["spec"]["partitions"] == partitions
        processor = find(objects, "Deployment", "stream-processor")
        scaled = objects_of(objects, "ScaledObject")
        if scaled:
            (so,) = scaled
            assert so["spec"]["scaleTargetRef"]["name"] == "stream-processor"
            assert "replicas" not in processor["spec"], "KEDA-managed: no fixed spec.replicas"
            assert 1 <= so["spec"]["minReplicaCount"] <= so["spec"]["maxReplicaCount"] <= partitions
            query = so["spec"]["triggers"][0]["metadata"]["query"]
            assert f'namespace="{NAMESPACES[overlay]}"' in query
        else:
            assert 1 <= processor["spec"]["replicas"] <= partitions


def test_prod_topics_match_topic_specs(rendered: dict[str, list[Manifest]]) -> None:
    objects = rendered["prod"]
    config = common_config(objects)
    partitions = int(config["STREAMREC_KAFKA__EVENTS_PARTITIONS"])
    (kafka,) = objects_of(objects, "Kafka")
    cluster = kafka["metadata"]["name"]
    topics = {t["spec"]["topicName"]: t for t in objects_of(objects, "KafkaTopic")}
    specs = {s.name: s for s in topic_specs(partitions)}
    assert set(topics) == set(specs)
    for name, spec in specs.items():
        topic = topics[name]
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == cluster
        assert topic["spec"]["partitions"] == spec.partitions, name
        assert topic["spec"]["replicas"] == 3, name
        assert topic["spec"]["config"]["min.insync.replicas"] == 2, name
        policy = topic["spec"]["config"]["cleanup.policy"]
        assert policy == ("compact" if spec.compacted else "delete"), name
    assert {n for n, s in specs.items() if s.compacted} == {"catalog.v1", "users.v1"}


def test_prod_kafka_cluster(rendered: dict[str, list[Manifest]]) -> None:
    objects = rendered["prod"]
    config = common_config(objects)
    (kafka,) = objects_of(objects, "Kafka")
    name = kafka["metadata"]["name"]
    broker_config = kafka["spec"]["kafka"]["config"]
    assert broker_config["min.insync.replicas"] == 2
    assert broker_config["default.replication.factor"] == 3
    assert broker_config["offsets.topic.replication.factor"] == 3
    assert broker_config["transaction.state.log.min.isr"] == 2
    assert broker_config["auto.create.topics.enable"] is False
    pools = objects_of(objects, "KafkaNodePool")
    assert all(p["metadata"]["labels"]["strimzi.io/cluster"] == name for p in pools)
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    controllers = sum(p["spec"]["replicas"] for p in pools if "controller" in p["spec"]["roles"])
    assert brokers >= 3
    assert controllers >= 3
    assert controllers % 2 == 1
    # one listener, TLS with SCRAM clients; ACLs enforced
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert listener["tls"] is True
    assert listener["authentication"]["type"] == "scram-sha-512"
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    bootstrap = f"{name}-kafka-bootstrap:{listener['port']}"
    assert config["STREAMREC_KAFKA__BOOTSTRAP_SERVERS"] == bootstrap
    assert config["STREAMREC_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["STREAMREC_KAFKA__SASL_MECHANISM"] == "SCRAM-SHA-512"
    (user,) = objects_of(objects, "KafkaUser")
    assert user["metadata"]["labels"]["strimzi.io/cluster"] == name
    assert user["metadata"]["name"] == config["STREAMREC_KAFKA__SASL_USERNAME"]
    assert user["spec"]["authentication"]["type"] == "scram-sha-512"
    acls = user["spec"]["authorization"]["acls"]

    def allowed(kind: str, resource: str, operation: str) -> bool:
        return any(
            rule["resource"]["type"] == kind
            and operation in rule["operations"]
            and (
                resource.startswith(rule["resource"]["name"])
                if rule["resource"].get("patternType") == "prefix"
                else resource == rule["resource"]["name"]
            )
            for rule in acls
        )

    for topic in topic_specs(12):  # every topic, read and written
        assert allowed("topic", topic.name, "Read"), topic.name
        assert allowed("topic", topic.name, "Write"), topic.name
    for group in ("streamrec-stream-processor", "streamrec-trainer-archive"):
        assert allowed("group", group, "Read"), group
    assert not allowed("topic", "someone-elses-topic", "Read")
    for deployment in ("ingest", "stream-processor", "recommender", "trainer"):
        container = find(objects, "Deployment", deployment)["spec"]["template"]["spec"]
        env = {e["name"]: e.get("valueFrom") for e in container["containers"][0]["env"]}
        password = env["STREAMREC_KAFKA__SASL_PASSWORD"]["secretKeyRef"]
        assert password == {"name": user["metadata"]["name"], "key": "password"}
        mounts = {m["mountPath"] for m in container["containers"][0]["volumeMounts"]}
        assert str(PurePosixPath(config["STREAMREC_KAFKA__SSL_CAFILE"]).parent) in mounts
    assert config["STREAMREC_KAFKA__ENABLE_IDEMPOTENCE"] == "true"
    assert config["STREAMREC_KAFKA__CREATE_TOPICS"] == "false"
    assert config["STREAMREC_KAFKA__REPLICATION_FACTOR"] == "3"


def test_dev_kafka(rendered: dict[str, list[Manifest]]) -> None:
    objects = rendered["dev"]
    config = common_config(objects)
    kafka = find(objects, "StatefulSet", "kafka")
    assert kafka["spec"]["replicas"] == 1
    container = kafka["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    bootstrap = config["STREAMREC_KAFKA__BOOTSTRAP_SERVERS"]
    assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{bootstrap}"
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16
    assert config["STREAMREC_KAFKA__CREATE_TOPICS"] == "true"
    assert config["STREAMREC_KAFKA__REPLICATION_FACTOR"] == "1"
    assert config["STREAMREC_KAFKA__ENABLE_IDEMPOTENCE"] == "true"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_redis_holds_derived_state_only(overlay: str, rendered: dict[str, list[Manifest]]) -> None:
    objects = rendered[overlay]
    config = find(objects, "ConfigMap", "redis-config")["data"]
    conf = config["redis.conf"]
    assert 'save ""' in conf.splitlines()
    assert "appendonly no" in conf.splitlines()
    assert "maxmemory-policy volatile-lru" in conf.splitlines()
    assert "include /usr/local/etc/redis/sizing.conf" in conf.splitlines()
    match = re.search(r"^maxmemory (\d+)(mb|gb)$", config["sizing.conf"], re.M)
    assert match
    maxmemory = int(match.group(1)) * (2**20 if match.group(2) == "mb" else 2**30)
    redis = find(objects, "Deployment", "redis")
    container = redis["spec"]["template"]["spec"]["containers"][0]
    limit = container["resources"]["limits"]["memory"]
    limit_bytes = int(limit[:-2]) * {"Mi": 2**20, "Gi": 2**30}[limit[-2:]]
    assert limit_bytes >= 1.2 * maxmemory, "leave headroom above maxmemory"
    assert common_config(objects)["STREAMREC_REDIS__URL"] == "redis://redis:6379/0"


def test_postgres_dsn_source(rendered: dict[str, list[Manifest]]) -> None:
    (cluster,) = objects_of(rendered["prod"], "Cluster")
    assert f"{cluster['metadata']['name']}-app" == "streamrec-pg-app"
    assert cluster["spec"]["instances"] >= 3
    assert cluster["spec"]["bootstrap"]["initdb"]["database"] == "streamrec"


# --- network policy -------------------------------------------------------------------------


def policies_for(objects: list[Manifest], labels: dict[str, str]) -> list[Manifest]:
    return [
        p
        for p in objects_of(objects, "NetworkPolicy")
        if selects(p["spec"]["podSelector"], labels) and "Ingress" in p["spec"]["policyTypes"]
    ]


def pod_peers(objects: list[Manifest], rule: dict[str, Any]) -> set[str] | None:
    """Workloads of this namespace a rule admits; None when it admits any source."""
    peers = rule.get("from")
    if not peers:
        return None
    admitted: set[str] = set()
    for peer in peers:
        if "podSelector" in peer and "namespaceSelector" not in peer:
            admitted |= matching_workloads(objects, peer["podSelector"])
    return admitted


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_default_deny(overlay: str, rendered: dict[str, list[Manifest]]) -> None:
    policy = find(rendered[overlay], "NetworkPolicy", "default-deny-ingress")
    assert policy["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_ingest_and_recommender_take_outside_traffic(
    overlay: str, rendered: dict[str, list[Manifest]]
) -> None:
    objects = rendered[overlay]
    for name, labels in pods(objects):
        open_rules = [
            rule
            for p in policies_for(objects, labels)
            for rule in p["spec"].get("ingress", [])
            if pod_peers(objects, rule) is None
        ]
        if name in PUBLIC:
            assert open_rules, f"{name} must accept outside traffic"
            assert all(r["ports"] == [{"port": "http", "protocol": "TCP"}] for r in open_rules)
        else:
            assert not open_rules, f"{overlay}: {name} is open to any source"
        for p in policies_for(objects, labels):
            for rule in p["spec"].get("ingress", []):
                for peer in rule.get("from", []):
                    if "namespaceSelector" in peer:
                        ns = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                        assert ns in ("monitoring", "cnpg-system"), (name, ns)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_dependencies_accept_only_the_services(
    overlay: str, rendered: dict[str, list[Manifest]]
) -> None:
    objects = rendered[overlay]
    checked = set()
    for name, labels in pods(objects):
        if name not in DEPENDENCY_CLIENTS:
            continue
        checked.add(name)
        admitted: set[str] = set()
        for policy in policies_for(objects, labels):
            for rule in policy["spec"].get("ingress", []):
                peers = pod_peers(objects, rule)
                assert peers is not None, f"{overlay}: {name} is open to any source"
                admitted |= peers
        assert admitted == DEPENDENCY_CLIENTS[name], (overlay, name, admitted)
    expected = {"redis", "kafka", "postgres"} if overlay == "dev" else {"redis"}
    assert checked == expected


@pytest.mark.parametrize(
    ("dependency", "modules"),
    [("redis", ("redis",)), ("kafka", ("aiokafka",)), ("postgres", ("asyncpg",))],
)
def test_dependency_clients_are_the_services_that_import_them(
    dependency: str, modules: tuple[str, ...]
) -> None:
    """``DEPENDENCY_CLIENTS`` (what the NetworkPolicies admit) follows the code: a service
    that imports the client library is admitted (the trainer's rollouts read Redis)."""
    services = Path(__file__).resolve().parents[2] / "services"
    importing = set()
    for service in SERVICES:
        for path in (services / service / "src").rglob("*.py"):
            text = path.read_text()
            if any(re.search(rf"^\s*(import|from) {m}\b", text, re.M) for m in modules):
                importing.add(service)
                break
    assert importing == DEPENDENCY_CLIENTS[dependency]


def test_prod_operator_managed_dependencies(rendered: dict[str, list[Manifest]]) -> None:
    """Kafka (Strimzi generates the NetworkPolicy from the listener's peers) and the
    CloudNativePG instances admit the same client services."""
    objects = rendered["prod"]
    (kafka,) = objects_of(objects, "Kafka")
    for listener in kafka["spec"]["kafka"]["listeners"]:
        admitted: set[str] = set()
        for peer in listener["networkPolicyPeers"]:
            admitted |= matching_workloads(objects, peer["podSelector"])
        assert admitted == DEPENDENCY_CLIENTS["kafka"]
    (cluster,) = objects_of(objects, "Cluster")
    instance_labels = {"cnpg.io/cluster": cluster["metadata"]["name"]}
    (policy,) = [p for p in policies_for(objects, instance_labels) if p["spec"].get("ingress")]
    client_rule = policy["spec"]["ingress"][0]
    assert client_rule["ports"] == [{"port": 5432, "protocol": "TCP"}]
    assert pod_peers(objects, client_rule) == DEPENDENCY_CLIENTS["postgres"]


@pytest.mark.parametrize("overlay", ["prod", "prod-keda"])
def test_service_monitors(overlay: str, rendered: dict[str, list[Manifest]]) -> None:
    objects = rendered[overlay]
    monitored = set()
    for monitor in objects_of(objects, "ServiceMonitor"):
        services = [
            s
            for s in objects_of(objects, "Service")
            if selects(monitor["spec"]["selector"], s["metadata"]["labels"])
        ]
        assert len(services) == 1, monitor["metadata"]["name"]
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] in {p["name"] for p in services[0]["spec"]["ports"]}
        assert endpoint["path"] == "/metrics"
        assert {"action": "labeldrop", "regex": "service"} in endpoint["relabelings"]
        monitored.add(services[0]["metadata"]["name"])
    assert monitored == set(SERVICES)
    assert not objects_of(rendered["dev"], "ServiceMonitor"), "dev assumes no Prometheus Operator"


def test_pod_security_labels(rendered: dict[str, list[Manifest]]) -> None:
    (dev,) = objects_of(rendered["dev"], "Namespace")
    assert dev["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for overlay in ("prod", "prod-keda"):
        (ns,) = objects_of(rendered[overlay], "Namespace")
        assert ns["metadata"]["labels"]["pod-security.kubernetes.io/warn"] == "restricted"
