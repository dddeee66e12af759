"""The alert rules under promtool: syntax and templates (``promtool check rules``), a unit test
per alert that fires on a bad series and stays silent on a healthy one (``promtool test rules``
on alerts/rules_test.yaml), and a healthy deployment that fires nothing: each service's real
``/metrics`` exposition (one process per service, as deployed) fed to every rule."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from streamrec_shared.metrics import SERVICE_PREFIXES

HERE = Path(__file__).resolve().parent
RULE = HERE.parents[1] / "deploy" / "k8s" / "components" / "monitoring" / "prometheusrule.yaml"
UNIT_TESTS = HERE / "alerts" / "rules_test.yaml"


def _groups(*, annotations: bool) -> dict[str, Any]:
    groups = yaml.safe_load(RULE.read_text())["spec"]["groups"]
    if not annotations:
        for group in groups:
            for rule in group["rules"]:
                rule.pop("annotations", None)
    return {"groups": groups}


def _alerts() -> set[str]:
    return {r["alert"] for g in _groups(annotations=False)["groups"] for r in g["rules"]}


def _promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def promtool(tools: Any) -> str:
    found: str = tools.promtool()
    return found


def test_promtool_check_rules(promtool: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(_groups(annotations=True), sort_keys=False))
    result = _promtool(promtool, "check", "rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in result.stdout


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    cases = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    checks = [c for test in cases for c in test["alert_rule_test"]]
    fires = {c["alertname"] for c in checks if c["exp_alerts"]}
    assert fires == _alerts()
    # silent cases: an explicit empty expectation, or a healthy namespace beside the bad one
    for test in cases:
        namespaces = {s["series"].split('namespace="', 1)[1].split('"', 1)[0]
                      for s in test["input_series"]}  # fmt: skip
        silent = any(not c["exp_alerts"] for c in test["alert_rule_test"])
        assert silent or len(namespaces) > 1, f"{test['name']}: no healthy case"


def _run_unit_tests(promtool: str, directory: Path, tests: dict[str, Any]) -> None:
    (directory / "rules.yaml").write_text(yaml.safe_dump(_groups(annotations=False)))
    path = directory / "rules_test.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = _promtool(promtool, "test", "rules", str(path))
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_promtool_unit_tests(promtool: str, tmp_path: Path) -> None:
    _run_unit_tests(promtool, tmp_path, yaml.safe_load(UNIT_TESTS.read_text()))


# What each service process sets in a healthy deployment with a small catalogue (exact search,
# no approximate index): model version 3 active, served and folded in, every dependency up.
HEALTHY = {
    "ingest": "",
    "stream-processor": "metrics.PROCESSOR_MODEL_VERSION.set(3)",
    "trainer": "metrics.TRAINER_ACTIVE_VERSION.set(3); metrics.TRAINER_LAST_PUBLISH.set(1.7e9)",
    "recommender": (
        "metrics.RECOMMENDER_MODEL_VERSION.set(3); metrics.RECOMMENDER_MODEL_AGE.set(60)"
    ),
}
SCRIPT = """
import sys
from streamrec_shared import metrics
service = sys.argv[1]
for dependency in ("kafka", "redis", "postgres"):
    metrics.DEPENDENCY_UP.labels(service, dependency).set(1)
{setup}
sys.stdout.write(metrics.exposition(service).decode())
"""


def _exposition(service: str) -> str:
    code = SCRIPT.format(setup=HEALTHY[service])
    result = subprocess.run(
        [sys.executable, "-c", code, service], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _series(service: str, exposition: str) -> list[dict[str, str]]:
    series = []
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if not sample.name.startswith("streamrec_"):
                continue
            labels = {**sample.labels, "namespace": "streamrec", "pod": f"{service}-1"}
            selector = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items()))
            series.append(
                {"series": f"{sample.name}{{{selector}}}", "values": f"{sample.value:g}x90"}
            )
    return series


def test_a_healthy_deployment_fires_no_alert(promtool: str, tmp_path: Path) -> None:
    expositions = {service: _exposition(service) for service in SERVICE_PREFIXES}
    inputs = [s for service, text in expositions.items() for s in _series(service, text)]
    assert any("recommender_model_version" in s["series"] for s in inputs)
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{
            "name": "healthy deployment",
            "interval": "1m",
            "input_series": inputs,
            "alert_rule_test": [
                {"eval_time": "60m", "alertname": alert, "exp_alerts": []}
                for alert in sorted(_alerts())
            ],
        }],
    }  # fmt: skip
    _run_unit_tests(promtool, tmp_path, tests)
    # each service exports only its own and the shared families (issue 17, point 10)
    for service, text in expositions.items():
        others = tuple(p for s, p in SERVICE_PREFIXES.items() if s != service)
        names = {f.name for f in text_string_to_metric_families(text)}
        assert not {n for n in names if n.startswith(others)}, service
