"""The auth Services: the public one (http only) and `<name>-admin` (the admin port only).

The auth service serves its admin API and /metrics on PHOENIX_ADMIN_PORT alone, so the Service
users and ingresses reach never carries that port; the admin Service is what the ServiceMonitor
scrapes and what operators' tooling calls. Its labels carry component `admin`, so a selector for
the admin Service (the ServiceMonitor's) never matches the public one.
"""

from __future__ import annotations

from typing import Any

from phoenix_operator.builders.common import Owner, metadata, selector
from phoenix_operator.spec import PhoenixAuthSpec

ADMIN_COMPONENT = "admin"


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


def build_admin_service(owner: Owner, spec: PhoenixAuthSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, owner.admin_service_name, ADMIN_COMPONENT),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(owner, "auth"),
            "ports": [
                {
                    "name": "admin",
                    "port": spec.auth_service.admin_port,
                    "targetPort": "admin",
                    "protocol": "TCP",
                }
            ],
        },
    }


def build_auth_network_policy(owner: Owner, spec: PhoenixAuthSpec) -> dict[str, Any]:
    """Ingress to the auth pods: the public port from anywhere, the admin port (admin API,
    /metrics, health JSON) only from `networkPolicy.adminFrom`. An empty list leaves that rule
    out (a rule without `from` would admit every source)."""
    svc = spec.auth_service
    ingress: list[dict[str, Any]] = [{"ports": [{"protocol": "TCP", "port": svc.port}]}]
    peers = []
    for peer in svc.network_policy.admin_from:
        entry: dict[str, Any] = {}
        if peer.namespace_selector is not None:
            entry["namespaceSelector"] = {"matchLabels": dict(peer.namespace_selector.match_labels)}
        if peer.pod_selector is not None:
            entry["podSelector"] = {"matchLabels": dict(peer.pod_selector.match_labels)}
        peers.append(entry)
    if peers:
        ingress.append({"ports": [{"protocol": "TCP", "port": svc.admin_port}], "from": peers})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(owner, owner.auth_name, "auth"),
        "spec": {
            "podSelector": {"matchLabels": selector(owner, "auth")},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }
