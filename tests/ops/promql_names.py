"""PromQL checks: parse with ``promql-parser`` and list the series an expression reads.

Metric names come from the collectors ``streamrec_shared.metrics`` defines (all registered in
prometheus_client's default registry), with the sample names each metric type exposes
(counter ``<name>_total``; histogram ``_bucket``, ``_sum``, ``_count``; gauge ``<name>``) and
its label names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import promql_parser
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

import streamrec_shared.metrics

# Labels Prometheus (Prometheus Operator ServiceMonitor) adds to every scraped series.
TARGET_LABELS = frozenset({"namespace", "pod", "container", "endpoint", "instance", "job"})
# Values for Grafana's variables, so a dashboard query becomes plain PromQL.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "${namespace}": "streamrec",
    "$namespace": "streamrec",
}


@dataclass(frozen=True)
class Series:
    """One metric name as Prometheus stores it, with its labels (``le`` for buckets)."""

    metric: str
    labels: frozenset[str]


@dataclass
class Selector:
    """A vector selector found in an expression."""

    name: str
    matchers: dict[str, str] = field(default_factory=dict)


def streamrec_series() -> dict[str, Series]:
    """Every sample name the streamrec metrics expose, keyed by that name."""
    out: dict[str, Series] = {}
    for collector in vars(streamrec_shared.metrics).values():
        if not isinstance(collector, MetricWrapperBase):
            continue
        (family,) = collector.describe()
        # prometheus_client keeps label names privately; they are part of the metric's identity.
        labels = frozenset(getattr(collector, "_labelnames", ()))
        if family.type == "counter":
            out[f"{family.name}_total"] = Series(family.name, labels)
        elif family.type == "histogram":
            out[f"{family.name}_bucket"] = Series(family.name, labels | {"le"})
            out[f"{family.name}_sum"] = Series(family.name, labels)
            out[f"{family.name}_count"] = Series(family.name, labels)
        elif family.type == "gauge":
            out[family.name] = Series(family.name, labels)
        else:
            raise AssertionError(f"metric type {family.type} of {family.name} not handled")
    registered = {family.name for family in REGISTRY.collect()}
    families = {series.metric for series in out.values()}
    assert families <= registered, f"not in the default registry: {families - registered}"
    return out


def substitute_grafana_variables(expr: str) -> str:
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    leftover = re.findall(r"\$\{?\w+\}?", expr)
    if leftover:
        raise ValueError(f"unknown Grafana variables {leftover} in {expr!r}")
    return expr


def selectors(expr: str) -> list[Selector]:
    """Parse ``expr`` (raises on a syntax error) and return its vector selectors."""
    ast = promql_parser.parse(expr)
    found: list[Selector] = []

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = {m.name: m.value for m in node.matchers.matchers}
            name = node.name or matchers.get("__name__", "")
            found.append(Selector(name=name, matchers=matchers))

    promql_parser.walk(ast, visit)
    return found


def problems(expr: str, catalog: dict[str, Series]) -> list[str]:
    """Metric names, matcher labels and ``by (...)`` labels in ``expr`` that streamrec does not
    expose (target labels such as ``namespace`` and ``pod`` count as exposed)."""
    out: list[str] = []
    for sel in selectors(expr):
        series = catalog.get(sel.name)
        if series is None:
            out.append(f"unknown metric {sel.name!r}")
            continue
        for label in sel.matchers:
            if label != "__name__" and label not in series.labels | TARGET_LABELS:
                out.append(f"{sel.name} has no label {label!r}")

    def visit(node: object) -> None:
        if not isinstance(node, promql_parser.AggregateExpr) or node.modifier is None:
            return
        if node.modifier.type != promql_parser.AggModifierType.By:
            return
        available = set(TARGET_LABELS)
        for sel in _selectors_of(node.expr):
            known = catalog.get(sel.name)
            available |= set(known.labels) if known else set()
        for label in node.modifier.labels:
            if label not in available:
                out.append(f"{node.op} by ({label}) groups by a label its series do not have")

    promql_parser.walk(promql_parser.parse(expr), visit)
    return out


def _selectors_of(node: promql_parser.Expr) -> list[Selector]:
    found: list[Selector] = []

    def visit(inner: object) -> None:
        if isinstance(inner, promql_parser.VectorSelector):
            found.append(Selector(name=inner.name or ""))

    promql_parser.walk(node, visit)
    return found
