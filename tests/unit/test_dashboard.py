"""The Grafana dashboard queries only metrics and labels the code really exports.

A dashboard that names a metric nobody exports shows "No data" forever and nobody notices; this
test reads the real registries of the auth service and the operator instead of a list kept by hand.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "helm" / "phoenix-operator" / "dashboards" / "phoenix.json"

# Labels Prometheus adds when scraping (target relabelling) or that histograms carry.
SCRAPE_LABELS = {"namespace", "pod", "instance", "job", "le", "service", "container"}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
    "summary": ("_count", "_sum", "_created", ""),
}


def _collectors(*owners: Any) -> list[MetricWrapperBase]:
    found = []
    for owner in owners:
        for value in vars(owner).values():
            if isinstance(value, MetricWrapperBase):
                found.append(value)
    return found


def exported_series() -> dict[str, set[str]]:
    """Series names a scrape of the auth service or the operator can show, with their label names."""
    from phoenix_auth import metrics as auth_metrics
    from phoenix_operator import metrics as operator_metrics

    auth = auth_metrics.Metrics()
    registries: list[CollectorRegistry] = [auth.registry, operator_metrics.REGISTRY]
    # Label names of each family: read from the instruments themselves (registries only list
    # label sets that already have a child).
    labels_by_family: dict[str, tuple[str, ...]] = {}
    for metric in _collectors(auth, operator_metrics):
        for family in metric.describe():
            labels_by_family[family.name] = tuple(metric._labelnames)
    series: dict[str, set[str]] = {}
    for registry in registries:
        for family in registry.collect():
            for suffix in SUFFIXES.get(family.type, ("",)):
                series[family.name + suffix] = set(labels_by_family.get(family.name, ()))
    return series


def dashboard_exprs() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            out.append((f"variable {var['name']}", var["definition"]))
    return out


METRIC_RE = re.compile(r"\b(phoenix_[a-z0-9_]+)\b")
SELECTOR_RE = re.compile(r"\b(phoenix_[a-z0-9_]+)\{([^}]*)\}")
MATCHER_RE = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
BY_RE = re.compile(r"\bby\s*\(([^)]*)\)")


def test_dashboard_covers_the_issue_topics() -> None:
    """Login latency, cache hit ratio by layer, pool use, error rate and reconcile health are all there."""
    used = {m for _, e in dashboard_exprs() for m in METRIC_RE.findall(e)}
    for needed in (
        "phoenix_http_request_duration_seconds_bucket",
        "phoenix_cache_requests_total",
        "phoenix_cache_lookups_total",
        "phoenix_db_pool_connections",
        "phoenix_http_request_duration_seconds_count",
        "phoenix_db_query_duration_seconds_bucket",
        "phoenix_login_attempts_total",
        "phoenix_operator_reconciles_total",
        "phoenix_operator_errors_total",
        "phoenix_operator_reconcile_duration_seconds_bucket",
    ):
        assert needed in used, f"the dashboard has no panel on {needed}"
    assert any("by (layer)" in e and "phoenix_cache_requests_total" in e for _, e in dashboard_exprs())


@pytest.mark.parametrize(("panel", "expr"), [pytest.param(p, e, id=p) for p, e in dashboard_exprs()])
def test_every_metric_and_label_in_the_dashboard_is_exported(panel: str, expr: str) -> None:
    series = exported_series()
    names = METRIC_RE.findall(expr)
    assert names, f"panel {panel!r} queries no phoenix metric: {expr}"
    for name in names:
        assert name in series, (
            f"panel {panel!r} uses {name}, which neither the auth service nor the operator exports"
        )
    for name, matchers in SELECTOR_RE.findall(expr):
        for label in MATCHER_RE.findall(matchers):
            assert label in series[name] | SCRAPE_LABELS, f"panel {panel!r}: {name} has no label {label!r}"
    known = set().union(*(series[n] for n in names)) | SCRAPE_LABELS
    for group in BY_RE.findall(expr):
        for label in (x.strip() for x in group.split(",") if x.strip()):
            assert label in known, (
                f"panel {panel!r}: `by ({group})` uses {label!r}, a label none of {names} has"
            )


def test_the_check_would_catch_a_misspelt_metric() -> None:
    """Guard against the test passing vacuously (for example an empty registry)."""
    series = exported_series()
    assert "phoenix_cache_requests_total" in series
    assert "phoenix_cache_request_total" not in series
    assert series["phoenix_cache_requests_total"] >= {"layer", "result"}


def test_dashboard_json_is_the_generator_s_output() -> None:
    """The JSON is generated by scripts/gen-dashboard.py; hand edits would be lost on the next run."""
    argv = [sys.executable, str(REPO / "scripts" / "gen-dashboard.py")]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == json.loads(DASHBOARD.read_text()), "run scripts/gen-dashboard.py"
