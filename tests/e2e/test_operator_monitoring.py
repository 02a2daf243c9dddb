"""Monitoring objects on a real API server with the Prometheus Operator's real CRDs (PrometheusRule,
ServiceMonitor; pinned in scripts/build-control-plane.sh): absent CRDs are reported, installing them
later makes the operator create both objects (validated by those CRDs' schemas), a spec switch
removes them.

This module installs cluster-wide CRDs, so it runs after the other operator modules (file order)
and removes the CRDs at the end.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_kube import MANIFESTS, ControlPlane, OperatorProcess, wait_until

MONITORING_CRDS = ("prometheusrules.monitoring.coreos.com", "servicemonitors.monitoring.coreos.com")


@pytest.fixture(scope="module")
def monitoring_operator(
    operator_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("operator-monitoring") / "operator.log"
    op = OperatorProcess(operator_kubeconfig, log, ["--priority=500", "--resync-seconds=10"]).start()
    try:
        wait_until(op.healthy, 60, "the operator's liveness endpoint")
        yield op
    finally:
        op.stop()


@pytest.fixture
def prometheus_crds(control_plane: ControlPlane) -> Iterator[None]:
    """Installed on demand by the test (not at set-up), removed afterwards."""
    yield
    control_plane.kubectl(
        "delete", "crd", *MONITORING_CRDS, "--ignore-not-found", "--wait=false", check=False
    )


def install_prometheus_crds(cp: ControlPlane) -> None:
    crds = cp.bin_dir / "prometheus-operator-crds.yaml"
    assert crds.exists(), "run scripts/build-control-plane.sh (it fetches the Prometheus Operator CRDs)"
    cp.kubectl("apply", "--server-side", "-f", str(crds))
    for name in MONITORING_CRDS:
        cp.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s", timeout=70)


def monitoring_condition(cp: ControlPlane, ns: str) -> dict[str, Any]:
    return cp.condition(cp.get("pxa", "phoenix", ns), "MonitoringConfigured") or {}


def test_monitoring_objects_follow_the_crds_and_the_spec(
    control_plane: ControlPlane,
    monitoring_operator: OperatorProcess,
    prometheus_crds: None,
    namespace: str,
) -> None:
    cp, ns = control_plane, namespace
    cp.kubectl("apply", "-n", ns, "-f", str(MANIFESTS / "samples" / "minimal.yaml"))
    cond = wait_until(
        lambda: (c := monitoring_condition(cp, ns)).get("reason") == "PrometheusOperatorCRDsMissing" and c,
        60,
        "MonitoringConfigured=False PrometheusOperatorCRDsMissing",
    )
    assert cond["status"] == "False"

    # The Prometheus Operator's CRDs arrive later: the next resync (10 s here) creates the objects.
    install_prometheus_crds(cp)
    cond = wait_until(
        lambda: (c := monitoring_condition(cp, ns)).get("status") == "True" and c,
        60,
        "MonitoringConfigured=True after the CRDs were installed",
    )
    assert cond["reason"] == "Configured"
    owner_uid = cp.get("pxa", "phoenix", ns)["metadata"]["uid"]

    rule = cp.get("prometheusrule", "phoenix-alerts", ns)
    assert rule["metadata"]["ownerReferences"][0]["uid"] == owner_uid
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert {
        "PhoenixApiLatencyHigh",
        "PhoenixDbQuerySlow",
        "PhoenixCacheHitRatioLow",
        "PhoenixErrorRateHigh",
    } <= set(alerts)
    for alert in alerts.values():
        assert alert["labels"]["severity"] in {"warning", "critical", "info"}
        assert alert["annotations"].get("runbook_url", "").startswith("https://")

    monitor = cp.get("servicemonitor", "phoenix", ns)
    assert monitor["metadata"]["ownerReferences"][0]["uid"] == owner_uid
    # The monitor selects the admin Service (the auth service answers /metrics on its admin port
    # only) and names its port; it never selects the public Service, which has no admin port.
    admin = cp.get("service", "phoenix-admin", ns)
    public = cp.get("service", "phoenix", ns)
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= admin["metadata"]["labels"].items()
    assert not selector.items() <= public["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "admin"
    assert [p["name"] for p in admin["spec"]["ports"]] == ["admin"]
    assert [p["name"] for p in public["spec"]["ports"]] == ["http"]
    template = cp.get("deployment", "phoenix", ns)["spec"]["template"]
    ports = {p["name"]: p["containerPort"] for p in template["spec"]["containers"][0]["ports"]}
    assert template["metadata"]["annotations"]["prometheus.io/port"] == str(ports["admin"])
    assert cp.get("pxa", "phoenix", ns)["status"]["monitoring"] == {
        "prometheusRule": True,
        "serviceMonitor": True,
    }

    # Thresholds from the spec reach the rule; switching the rule off removes it.
    patch = {"spec": {"monitoring": {"prometheusRule": {"thresholds": {"apiLatencyMs": 250}}}}}
    cp.kubectl("patch", "pxa", "phoenix", "-n", ns, "--type=merge", "-p", json.dumps(patch))
    wait_until(
        lambda: "0.25" in json.dumps(cp.get("prometheusrule", "phoenix-alerts", ns)["spec"]),
        30,
        "the 250 ms latency threshold in the rule",
    )
    off = {"spec": {"monitoring": {"prometheusRule": {"enabled": False}}}}
    cp.kubectl("patch", "pxa", "phoenix", "-n", ns, "--type=merge", "-p", json.dumps(off))
    wait_until(
        lambda: not cp.exists("prometheusrule", "phoenix-alerts", ns), 30, "the PrometheusRule removed"
    )
    assert cp.exists("servicemonitor", "phoenix", ns)
