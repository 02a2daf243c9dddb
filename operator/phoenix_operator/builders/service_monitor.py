"""ServiceMonitor scraping /metrics through the admin Service (`<name>-admin`, port `admin`).

The auth service answers /metrics on its admin port only (the public port says 404), so the
ServiceMonitor selects the admin Service by its component label, never the public one.
"""

from __future__ import annotations

from typing import Any

from phoenix_operator.builders.common import Owner, metadata, selector
from phoenix_operator.builders.service import ADMIN_COMPONENT
from phoenix_operator.spec import PhoenixAuthSpec


def build_service_monitor(owner: Owner, spec: PhoenixAuthSpec) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": metadata(owner, owner.auth_name, "monitoring"),
        "spec": {
            "selector": {"matchLabels": selector(owner, ADMIN_COMPONENT)},
            "namespaceSelector": {"matchNames": [owner.namespace]},
            "endpoints": [
                {"port": "admin", "path": "/metrics", "interval": spec.monitoring.service_monitor.interval}
            ],
        },
    }
