"""Operator metrics (prometheus-client), served on settings.metrics_port.

Names (documented in docs/operator.md, checked by the Grafana dashboard test):
  phoenix_operator_reconciles_total{result}     success | transient_error | permanent_error | paused
  phoenix_operator_reconcile_duration_seconds    histogram of one reconcile
  phoenix_operator_errors_total{kind}            the error's reason (Conflict, Forbidden, InvalidSpec, ...)
  phoenix_operator_managed_objects{namespace,name}  PhoenixAuth objects reconciled by this process
  phoenix_operator_api_requests_total{verb,kind}  Kubernetes API requests the reconciler made
Labels never carry secret values, only reasons and object names.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(
    "phoenix_operator_reconciles",
    "PhoenixAuth reconciles by result.",
    ["result"],
    registry=REGISTRY,
)
RECONCILE_DURATION = Histogram(
    "phoenix_operator_reconcile_duration_seconds",
    "Duration of one PhoenixAuth reconcile.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
    registry=REGISTRY,
)
ERRORS = Counter(
    "phoenix_operator_errors",
    "Errors met while reconciling, by kind (the error's reason).",
    ["kind"],
    registry=REGISTRY,
)
MANAGED = Gauge(
    "phoenix_operator_managed_objects",
    "PhoenixAuth objects this operator reconciles.",
    ["namespace", "name"],
    registry=REGISTRY,
)
API_REQUESTS = Counter(
    "phoenix_operator_api_requests",
    "Kubernetes API requests made by the reconciler (not Kopf's watches), by verb and kind.",
    ["verb", "kind"],
    registry=REGISTRY,
)

for _result in ("success", "transient_error", "permanent_error", "paused"):
    RECONCILES.labels(result=_result)


def serve(port: int, host: str = "0.0.0.0") -> None:  # noqa: S104 - scraped from the pod IP
    """Start the metrics HTTP server in a daemon thread (called once from on.startup)."""
    start_http_server(port, addr=host, registry=REGISTRY)
