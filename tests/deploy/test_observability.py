"""ops/: the Prometheus alert rules and the Grafana dashboard, checked against the real metrics.

Every metric an alert or a panel queries must be one a Sportello process exports (read from
sportello.metrics, including the scrape-time gauges of a real SQLite service database); every
alert links to an existing runbook section; the Kubernetes PrometheusRule carries the same rules.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from sportello import metrics
from sportello.db import Database
from sportello.tables import KERNEL_METADATA

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "ops" / "prometheus" / "sportello-alerts.yaml"
DASHBOARD = ROOT / "ops" / "grafana" / "sportello-dashboard.json"
DURATION = re.compile(r"^[0-9]+(ms|s|m|h|d|w|y)$")
PROMQL_KEYWORDS = {"sum", "by", "rate", "max", "min", "avg", "histogram_quantile", "le", "without", "on", "ignoring",
                   "humanize", "humanizeDuration", "count", "increase", "irate", "and", "or", "unless", "up"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Sample names a service process exports (histogram/counter suffixes included)."""
    names: set[str] = {"up"}  # Prometheus' own
    for metric in metrics.REGISTRY.collect():
        if metric.name.startswith("sportello_"):
            names.add(metric.name)
            names.update(s.name for s in metric.samples)
            if metric.type == "histogram":
                names.update(f"{metric.name}_{suffix}" for suffix in ("bucket", "count", "sum"))
            if metric.type == "counter":
                names.add(f"{metric.name}_total")
    database = Database(f"sqlite:///{tmp_path_factory.mktemp('obs') / 'x.sqlite3'}")
    KERNEL_METADATA.create_all(database.engine)
    registry = CollectorRegistry()
    registry.register(metrics.ServiceStateCollector("x", database))
    names.update(s.name for family in registry.collect() for s in family.samples)
    return names


def metric_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', "", expr)
    without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_labels)
    without_ranges = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", without_ranges)
    return {word for word in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_ranges)
            if word not in PROMQL_KEYWORDS} - {"e"}


def _balanced(expr: str) -> bool:
    depth = 0
    for char in expr:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def _anchors() -> set[str]:
    text = (ROOT / "docs" / "runbook.md").read_text(encoding="utf-8")
    return {re.sub(r"[^a-z0-9 -]", "", h.lower()).strip().replace(" ", "-")
            for h in re.findall(r"^#{1,4} (.+)$", text, flags=re.M)}


def test_exported_names_include_the_promised_metrics(exported: set[str]) -> None:
    for name in ("sportello_rpc_duration_seconds_bucket", "sportello_http_request_duration_seconds_bucket",
                 "sportello_events_handled_total", "sportello_outbox_lag_seconds", "sportello_dead_letters_pending",
                 "sportello_platform_calls_total", "sportello_limiter_wait_seconds_total"):
        assert name in exported


def test_alert_rules_are_well_formed(exported: set[str]) -> None:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    assert set(document) == {"groups"}
    anchors = _anchors()
    groups = [g["name"] for g in document["groups"]]
    assert len(groups) == len(set(groups))
    alerts: list[str] = []
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, rule
            alerts.append(rule["alert"])
            assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", rule["alert"])
            assert isinstance(rule["expr"], str) and _balanced(rule["expr"]), rule["alert"]
            unknown = metric_names(rule["expr"]) - exported
            assert not unknown, f"{rule['alert']} queries metrics nobody exports: {unknown}"
            assert DURATION.match(rule["for"])
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
            path, _, anchor = rule["annotations"]["runbook_url"].partition("#")
            assert path == "docs/runbook.md" and anchor in anchors, f"{rule['alert']}: no runbook section #{anchor}"
    assert len(alerts) == len(set(alerts))


def test_metric_name_extraction_catches_a_typo(exported: set[str]) -> None:
    assert metric_names('sum by (service) (rate(sportello_events_handeld_total{outcome="failed"}[5m]))') - exported \
        == {"sportello_events_handeld_total"}


def test_dashboard_is_a_valid_grafana_dashboard(exported: set[str]) -> None:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["title"] == "Sportello" and isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    occupied: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                 for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))
        for target in panel["targets"]:
            assert _balanced(target["expr"])
            unknown = metric_names(target["expr"]) - exported
            assert not unknown, f"{panel['title']}: {unknown}"
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("gateway", "rpc", "events", "outbox", "dead letters", "national platform", "limiter"):
        assert topic in titles


def test_kubernetes_monitoring_resources_match_ops() -> None:
    docs = list(yaml.safe_load_all((ROOT / "k8s" / "monitoring" / "monitoring.yaml").read_text()))
    kinds = {d["kind"]: d for d in docs if d}
    assert kinds["PrometheusRule"]["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]
    monitor = kinds["PodMonitor"]["spec"]
    assert monitor["selector"]["matchLabels"] == {"app.kubernetes.io/name": "sportello"}
    assert [e["port"] for e in monitor["podMetricsEndpoints"]] == ["metrics"]
    deployment = yaml.safe_load_all((ROOT / "k8s" / "base" / "gateway.yaml").read_text())
    gateway = next(d for d in deployment if d and d["kind"] == "Deployment")
    assert gateway["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "sportello"
    ports = gateway["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert "metrics" in {p["name"] for p in ports}
