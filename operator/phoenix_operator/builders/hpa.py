"""HorizontalPodAutoscaler between replicas.min and replicas.max on CPU.

The pool was sized for replicas.max, so whatever the HPA does, the database's budget holds.
"""

from __future__ import annotations

from typing import Any

from phoenix_operator.builders.common import Owner, metadata
from phoenix_operator.spec import PhoenixAuthSpec


def build_hpa(owner: Owner, spec: PhoenixAuthSpec) -> dict[str, Any]:
    svc = spec.auth_service
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(owner, owner.auth_name, "auth"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": owner.auth_name},
            "minReplicas": svc.replicas.min,
            "maxReplicas": svc.replicas.max,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": svc.target_cpu_utilization},
                    },
                }
            ],
        },
    }
