"""Grafana dashboard, PrometheusRule alerts, the prometheus-adapter rule and the KEDA query:
PromQL parses (promql-parser) and reads only metrics and labels that streamrec_shared.metrics
defines."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

Manifest = dict[str, Any]
K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
MONITORING = K8S / "components" / "monitoring"
DASHBOARD = MONITORING / "dashboards" / "streamrec.json"
RULES = MONITORING / "prometheusrule.yaml"
ADAPTER = MONITORING / "prometheus-adapter-values.yaml"
OPERATIONS = K8S.parents[1] / "docs" / "operations.md"

# What the dashboard must show (issue 7), as words that must appear in some panel title.
DASHBOARD_TOPICS = (
    "request rate",
    "latency",
    "accepted vs rejected",
    "consumer lag",
    "freshness",
    "model version",
    "offline metrics",
    "ctr per algorithm and variant",
    "cache hit ratio",
    "degraded responses",
)
# What the alerts must cover: alert name -> the metric it must read.
REQUIRED_ALERTS = {
    "StreamrecRecommenderLatencyP99High": "streamrec_http_request_duration_seconds_bucket",
    "StreamrecHTTP5xxRatioHigh": "streamrec_http_requests_total",
    "StreamrecProcessorLagGrowing": "streamrec_processor_consumer_lag_messages",
    "StreamrecFreshnessP99High": "streamrec_processor_freshness_seconds_bucket",
    "StreamrecModelStale": "streamrec_recommender_model_age_seconds",
    "StreamrecTrainerRunFailed": "streamrec_trainer_runs_total",
    "StreamrecRecommenderDegraded": "streamrec_recommender_degraded_total",
    "StreamrecTrainerArchiveDeadLetters": "streamrec_trainer_archive_dead_letters_total",
    "StreamrecTrainerArchiveBehindRetention": (
        "streamrec_trainer_archive_position_timestamp_seconds"
    ),
}
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return [p for p in out if p["type"] != "row"]


def dashboard_exprs(promql_names: ModuleType) -> list[tuple[str, str]]:
    """(panel title, PromQL with Grafana variables replaced) of every panel query."""
    return [
        (p["title"], promql_names.substitute_grafana_variables(t["expr"]))
        for p in panels()
        for t in p["targets"]
    ]


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["spec"]["groups"] for rule in group["rules"]]


# --- dashboard ------------------------------------------------------------------------------


def test_dashboard_queries_parse_and_use_known_metrics(
    promql_names: ModuleType, metric_catalog: dict[str, Any]
) -> None:
    failures = []
    for title, expr in dashboard_exprs(promql_names):
        try:
            failures += [f"{title}: {p}" for p in promql_names.problems(expr, metric_catalog)]
        except ValueError as exc:  # promql_parser raises ValueError on a syntax error
            failures.append(f"{title}: does not parse: {exc}")
    assert not failures, "\n".join(failures)


def test_dashboard_shows_every_streamrec_metric(
    promql_names: ModuleType, metric_catalog: dict[str, Any]
) -> None:
    used = {
        metric_catalog[s.name].metric
        for _, expr in dashboard_exprs(promql_names)
        for s in promql_names.selectors(expr)
    }
    defined = {series.metric for series in metric_catalog.values()}
    assert defined - used == set(), "metrics no panel shows"


def test_dashboard_covers_the_issue(promql_names: ModuleType) -> None:
    titles = " | ".join(p["title"].lower() for p in panels())
    missing = [topic for topic in DASHBOARD_TOPICS if topic not in titles]
    assert not missing, missing


def test_dashboard_structure(metric_catalog: dict[str, Any]) -> None:
    data = dashboard()
    assert data["uid"]
    assert data["title"]
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        grid = panel["gridPos"]
        assert 0 <= grid["x"] <= grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        assert panel.get("description"), panel["title"]
    cells: dict[tuple[int, int], str] = {}
    for panel in data["panels"]:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    match = re.fullmatch(r"label_values\((\w+), namespace\)", variables["namespace"]["definition"])
    assert match
    assert match.group(1) in metric_catalog


def test_dashboard_shipped_as_configmap(rendered: dict[str, list[Manifest]]) -> None:
    for overlay in ("prod", "prod-keda"):
        (cm,) = [
            o
            for o in rendered[overlay]
            if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "streamrec-grafana-dashboard"
        ]
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(cm["data"]["streamrec.json"]) == dashboard()


# --- alerts ---------------------------------------------------------------------------------


def test_alert_rules_parse_and_use_known_metrics(
    promql_names: ModuleType, metric_catalog: dict[str, Any]
) -> None:
    failures = []
    for rule in rules():
        try:
            failures += [
                f"{rule['alert']}: {p}" for p in promql_names.problems(rule["expr"], metric_catalog)
            ]
        except ValueError as exc:
            failures.append(f"{rule['alert']}: does not parse: {exc}")
    assert not failures, "\n".join(failures)


def test_alert_rules_are_complete() -> None:
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names))
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert DURATION.match(rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        notes = rule["annotations"]
        for key in ("summary", "description", "runbook", "runbook_url"):
            assert notes.get(key), f"{rule['alert']}: no {key}"
        assert notes["runbook_url"] == f"docs/operations.md#{rule['alert'].lower()}"


def test_required_alerts(promql_names: ModuleType) -> None:
    by_name = {rule["alert"]: rule for rule in rules()}
    for alert, metric in REQUIRED_ALERTS.items():
        assert alert in by_name, f"missing alert {alert}"
        used = {s.name for s in promql_names.selectors(by_name[alert]["expr"])}
        assert metric in used, f"{alert} does not read {metric}"


def test_every_alert_has_a_runbook_section() -> None:
    doc = OPERATIONS.read_text()
    headings = set(re.findall(r"^### (\w+)$", doc, re.M))
    missing = {rule["alert"] for rule in rules()} - headings
    assert not missing, f"docs/operations.md has no section for {sorted(missing)}"


@pytest.mark.parametrize(
    "expr",
    [
        'sum(rate(streamrec_http_requests_total{service="ingest"}[5m])',  # unbalanced
        "rate(streamrec_http_requests[5m])",  # counter without _total
        'streamrec_recommender_model_version{algorithm="als"}',  # label it does not have
        "sum by (variant) (streamrec_recommender_degraded_total)",  # grouping label it lacks
    ],
)
def test_promql_checks_catch_mistakes(
    expr: str, promql_names: ModuleType, metric_catalog: dict[str, Any]
) -> None:
    try:
        found = promql_names.problems(expr, metric_catalog)
    except ValueError:
        return
    assert found, expr


# --- autoscaling queries --------------------------------------------------------------------


def test_prometheus_adapter_rule(
    promql_names: ModuleType, metric_catalog: dict[str, Any], rendered: dict[str, list[Manifest]]
) -> None:
    """The adapter serves the metric the HPAs ask for, from a metric streamrec exposes."""
    values = yaml.safe_load(ADAPTER.read_text())
    (rule,) = values["rules"]["custom"]
    series = promql_names.selectors(rule["seriesQuery"])
    assert [s.name for s in series] == ["streamrec_http_requests_total"]
    query = (
        rule["metricsQuery"]
        .replace("<<.Series>>", "streamrec_http_requests_total")
        .replace("<<.LabelMatchers>>", 'namespace="streamrec", service="ingest"')
        .replace("<<.GroupBy>>", "pod")
    )
    assert not promql_names.problems(query, metric_catalog)
    served = re.sub(
        rule["name"]["matches"], rule["name"]["as"].replace("${1}", r"\1"), series[0].name
    )
    hpa_metrics = {
        m["pods"]["metric"]["name"]
        for o in rendered["prod"]
        if o["kind"] == "HorizontalPodAutoscaler"
        for m in o["spec"]["metrics"]
        if m["type"] == "Pods"
    }
    assert hpa_metrics == {served}


def test_keda_query(
    promql_names: ModuleType, metric_catalog: dict[str, Any], rendered: dict[str, list[Manifest]]
) -> None:
    (scaled,) = [o for o in rendered["prod-keda"] if o["kind"] == "ScaledObject"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    query = trigger["metadata"]["query"]
    assert not promql_names.problems(query, metric_catalog)
    assert [s.name for s in promql_names.selectors(query)] == [
        "streamrec_processor_consumer_lag_messages"
    ]
