"""Step `monitoring`: PrometheusRule and ServiceMonitor when the Prometheus Operator's CRDs are
served; sets MonitoringConfigured (saying what to install when they are not)."""

from __future__ import annotations

import time

from phoenix_operator.builders.prometheus_rule import build_prometheus_rule
from phoenix_operator.builders.service_monitor import build_service_monitor
from phoenix_operator.kube import KubeClient
from phoenix_operator.reconcile.run import Run
from phoenix_operator.status import MONITORING_CONFIGURED, Condition

MONITORING_GV = "monitoring.coreos.com/v1"
DISCOVERY_TTL = 30.0  # seconds a "are the Prometheus Operator CRDs served?" answer is reused


class Discovery:
    """Whether monitoring.coreos.com/v1 is served, asked at most once per DISCOVERY_TTL for the
    whole operator: asking on every reconcile was one request in five at 200 PhoenixAuths. CRDs
    installed later are still picked up within DISCOVERY_TTL (plus the next reconcile)."""

    def __init__(self, kube: KubeClient, ttl: float = DISCOVERY_TTL) -> None:
        self.kube = kube
        self.ttl = ttl
        self._answer: tuple[float, bool] | None = None  # (when, served)

    async def monitoring_served(self) -> bool:
        now = time.monotonic()
        if self._answer is not None and now - self._answer[0] < self.ttl:
            return self._answer[1]
        served = await self.kube.has_resources(MONITORING_GV, {"prometheusrules", "servicemonitors"})
        self._answer = (now, served)
        return served


async def converge_monitoring(run: Run, discovery: Discovery) -> None:
    owner, obs = run.owner, run.obs
    mon = run.spec.monitoring
    want_rule, want_sm = mon.prometheus_rule.enabled, mon.service_monitor.enabled
    obs.monitoring = {"prometheusRule": False, "serviceMonitor": False}
    if not (want_rule or want_sm):
        obs.monitoring_cond = Condition(
            MONITORING_CONFIGURED,
            False,
            "Disabled",
            "prometheusRule and serviceMonitor are disabled in spec.monitoring",
        )
        return
    if not await discovery.monitoring_served():
        obs.monitoring_cond = Condition(
            MONITORING_CONFIGURED,
            False,
            "PrometheusOperatorCRDsMissing",
            "monitoring.coreos.com/v1 PrometheusRule/ServiceMonitor CRDs are not installed; "
            "install the Prometheus Operator CRDs to get alerts and scraping",
        )
        return
    if want_rule:
        await run.apply(build_prometheus_rule(owner, run.spec))
        obs.monitoring["prometheusRule"] = True
    else:
        await run.delete_owned(MONITORING_GV, "PrometheusRule", owner.rule_name)
    if want_sm:
        await run.apply(build_service_monitor(owner, run.spec))
        obs.monitoring["serviceMonitor"] = True
    else:
        await run.delete_owned(MONITORING_GV, "ServiceMonitor", owner.auth_name)
    made = [k for k, v in obs.monitoring.items() if v]
    obs.monitoring_cond = Condition(MONITORING_CONFIGURED, True, "Configured", "created " + ", ".join(made))
