"""ServiceMonitor scraping the auth Service's /metrics on the http port."""

from __future__ import annotations

from typing import Any

from phoenix_operator.builders.common import Owner, metadata, selector
from phoenix_operator.spec import PhoenixAuthSpec


def build_service_monitor(owner: Owner, spec: PhoenixAuthSpec) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": metadata(owner, owner.auth_name, "monitoring"),
        "spec": {
            "selector": {"matchLabels": selector(owner, "auth")},
            "namespaceSelector": {"matchNames": [owner.namespace]},
            "endpoints": [
                {"port": "http", "path": "/metrics", "interval": spec.monitoring.service_monitor.interval}
            ],
        },
    }
