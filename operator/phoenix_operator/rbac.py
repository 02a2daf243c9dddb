"""The RBAC rules phoenix-operator needs: the single source of the Helm chart's Roles.

Least privilege: only the resources the reconciler and Kopf touch, only the verbs they use.
- Children are applied server-side (`patch`; `create` when the apply creates them), read on a
  cache miss (`get`), watched for drift (`list`, `watch`) and deleted only where a feature can
  be switched off (`delete`: managed Redis's Deployment, Service, NetworkPolicy and Secret,
  superseded migration Jobs, PrometheusRule, ServiceMonitor). Nothing is ever PUT (`update`).
- Secrets: `get` (read a referenced Secret: DATABASE_URL, REDIS_URL, extraEnv; the digest rolls
  the pods), `patch` (label a referenced Secret `auth.phoenix.dev/watched=true`; apply the
  managed Redis password Secret), `create` (that Secret), `delete` (it, when Redis turns
  external), `list`/`watch` (Kopf's Secret watch; it selects the watched label server-side, but
  RBAC cannot limit by label, so these verbs cover every Secret of a watched namespace).
- Kopf: PhoenixAuths `list`/`watch`/`patch` (finalizer, progress) and the `status` subresource
  `patch`; core Events `create`; peering objects `list`/`watch`/`patch`; CRDs `list`/`watch`
  (Kopf notices the PhoenixAuth CRD appearing); namespaces `list`/`watch` only when watching
  named namespaces (Kopf checks they exist; unused with --all-namespaces).

The scope is where these apply: a Role in each watched namespace (the chart's default, the
release namespace) or, with --all-namespaces, one ClusterRole. `python3 rbac.py` prints the
chart's template of these rules (scripts/gen-manifests.sh writes it; --check fails on drift).
This module imports nothing from the package so that script can run it without installing it.
"""

from __future__ import annotations

import json
import sys
from typing import TypedDict


class Rule(TypedDict):
    apiGroups: list[str]
    resources: list[str]
    verbs: list[str]


READ = ["get", "list", "watch"]
APPLY = ["create", "patch"]

# Rules for the namespaces the operator serves (a Role in each, or cluster-wide with -A).
NAMESPACED_RULES: list[Rule] = [
    {"apiGroups": ["auth.phoenix.dev"], "resources": ["phoenixauths"], "verbs": [*READ, "patch"]},
    {"apiGroups": ["auth.phoenix.dev"], "resources": ["phoenixauths/status"], "verbs": ["patch"]},
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": [*READ, *APPLY]},
    {"apiGroups": [""], "resources": ["services"], "verbs": [*READ, *APPLY, "delete"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": [*READ, *APPLY, "delete"]},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": [*READ, *APPLY, "delete"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": [*READ, *APPLY, "delete"]},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": [*READ, *APPLY]},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": [*READ, *APPLY]},
    {
        "apiGroups": ["networking.k8s.io"],
        "resources": ["networkpolicies"],
        "verbs": [*READ, *APPLY, "delete"],
    },
    # Not watched: read on each reconcile, applied, deleted when switched off.
    {
        "apiGroups": ["monitoring.coreos.com"],
        "resources": ["prometheusrules", "servicemonitors"],
        "verbs": ["get", *APPLY, "delete"],
    },
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]
NAMESPACE_PEERING: Rule = {
    "apiGroups": ["kopf.dev"],
    "resources": ["kopfpeerings"],
    "verbs": ["list", "watch", "patch"],
}
CLUSTER_PEERING: Rule = {
    "apiGroups": ["kopf.dev"],
    "resources": ["clusterkopfpeerings"],
    "verbs": ["list", "watch", "patch"],
}
CRDS: Rule = {
    "apiGroups": ["apiextensions.k8s.io"],
    "resources": ["customresourcedefinitions"],
    "verbs": ["list", "watch"],
}
NAMESPACES: Rule = {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}

#: Every rule in any mode (what the operator may ever use).
RULES: list[Rule] = [*NAMESPACED_RULES, NAMESPACE_PEERING, CLUSTER_PEERING, CRDS, NAMESPACES]


def namespaced_rules() -> list[Rule]:
    """The Role in each watched namespace (named-namespaces mode)."""
    return [*NAMESPACED_RULES, NAMESPACE_PEERING]


def cluster_rules(all_namespaces: bool) -> list[Rule]:
    """The ClusterRole: cluster-scoped reads only when namespaces are named; with --all-namespaces
    the namespaced rules too, over the whole cluster."""
    if all_namespaces:
        return [CRDS, CLUSTER_PEERING, *NAMESPACED_RULES]
    return [CRDS, NAMESPACES]


def _yaml_rules(rules: list[Rule]) -> str:
    """Rules as YAML lines (flow lists of JSON strings are valid YAML)."""
    lines = []
    for rule in rules:
        lines.append(f"- apiGroups: {json.dumps(rule['apiGroups'])}")
        lines.append(f"  resources: {json.dumps(rule['resources'])}")
        lines.append(f"  verbs: {json.dumps(rule['verbs'])}")
    return "\n".join(lines)


def helm_template() -> str:
    """The chart's templates/_rbac.tpl: one `define` per Role the chart renders."""
    blocks: list[str | tuple[str, list[Rule]]] = [
        "{{/* Generated by scripts/gen-manifests.sh from operator/phoenix_operator/rbac.py: edit that. */}}",
        ("phoenix-operator.rbac.namespaced", namespaced_rules()),
        ("phoenix-operator.rbac.clusterNamed", cluster_rules(all_namespaces=False)),
        ("phoenix-operator.rbac.clusterAll", cluster_rules(all_namespaces=True)),
    ]
    out: list[str] = []
    for block in blocks:
        if isinstance(block, str):
            out.append(block)
            continue
        name, rules = block
        out += [f'{{{{- define "{name}" -}}}}', _yaml_rules(rules), "{{- end -}}"]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(helm_template())
