"""ClusterIP Service in front of the auth pods (also the ServiceMonitor's target)."""

from __future__ import annotations

from typing import Any

from phoenix_operator.builders.common import Owner, metadata, selector
from phoenix_operator.spec import PhoenixAuthSpec


def build_service(owner: Owner, spec: PhoenixAuthSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, owner.auth_name, "auth"),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(owner, "auth"),
            "ports": [
                {"name": "http", "port": spec.auth_service.port, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }
