"""The RBAC rules phoenix-operator needs: the single source for the Helm chart's (Cluster)Role.

Least privilege: only the resources the reconciler and Kopf touch, only the verbs they use.
Children are applied with server-side apply (`patch`), read (`get`, `list`, `watch` for
drift detection) and deleted when a feature is switched off (`delete`). Secrets: `get`
(read the DB URL for budget detection and hashing, keep the managed Redis password),
`list/watch` (a changed referenced Secret must roll the pods), `create/patch/delete` for the
managed Redis password Secret.
"""

from __future__ import annotations

from typing import TypedDict


class Rule(TypedDict):
    apiGroups: list[str]
    resources: list[str]
    verbs: list[str]


CHILD_VERBS = ["get", "list", "watch", "create", "patch", "update", "delete"]

RULES: list[Rule] = [
    # The custom resource and its status.
    {
        "apiGroups": ["auth.phoenix.dev"],
        "resources": ["phoenixauths"],
        "verbs": ["get", "list", "watch", "patch"],
    },
    {
        "apiGroups": ["auth.phoenix.dev"],
        "resources": ["phoenixauths/status"],
        "verbs": ["get", "patch", "update"],
    },
    # Children.
    {"apiGroups": [""], "resources": ["configmaps", "services"], "verbs": CHILD_VERBS},
    # Secrets: read the referenced DB/Redis URLs (hash, budget detection), watch them so a change
    # rolls the pods, write the managed Redis password Secret.
    {
        "apiGroups": [""],
        "resources": ["secrets"],
        "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"],
    },
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": CHILD_VERBS},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": CHILD_VERBS},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": CHILD_VERBS},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": CHILD_VERBS},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": CHILD_VERBS},
    {
        "apiGroups": ["monitoring.coreos.com"],
        "resources": ["prometheusrules", "servicemonitors"],
        "verbs": CHILD_VERBS,
    },
    # Events on transitions (Kopf posts core/v1 events).
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    # Kopf: peering (one active replica) and resource discovery.
    {"apiGroups": ["kopf.dev"], "resources": ["kopfpeerings"], "verbs": ["get", "list", "watch", "patch"]},
    # Cluster-scoped, needed only in cluster-wide mode (-A) or by Kopf's discovery.
    {
        "apiGroups": ["kopf.dev"],
        "resources": ["clusterkopfpeerings"],
        "verbs": ["get", "list", "watch", "patch"],
    },
    {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": ["get", "list", "watch"],
    },
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
]

#: Rules that need a ClusterRole (cluster-scoped resources); the rest can be a namespaced Role.
CLUSTER_SCOPED_RESOURCES = frozenset({"clusterkopfpeerings", "customresourcedefinitions", "namespaces"})


def namespaced_rules() -> list[Rule]:
    return [r for r in RULES if not set(r["resources"]) & CLUSTER_SCOPED_RESOURCES]


def cluster_rules() -> list[Rule]:
    return [r for r in RULES if set(r["resources"]) & CLUSTER_SCOPED_RESOURCES]
