"""RBAC rules cover every call the operator makes, with only the verbs it uses, scoped per mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from phoenix_operator import rbac
from phoenix_operator.kube import KINDS
from phoenix_operator.rbac import RULES, cluster_rules, namespaced_rules

RBAC_PY = Path(rbac.__file__)


def allowed(rules, group: str, resource: str) -> set[str]:
    verbs: set[str] = set()
    for rule in rules:
        if group in rule["apiGroups"] and resource in rule["resources"]:
            verbs |= set(rule["verbs"])
    return verbs


def test_every_applied_kind_is_covered_in_both_modes():
    for rules in (namespaced_rules(), cluster_rules(all_namespaces=True)):
        for kind in KINDS.values():
            group = "" if kind.api_version == "v1" else kind.api_version.split("/")[0]
            assert {"get", "patch"} <= allowed(rules, group, kind.plural), kind
        assert allowed(rules, "auth.phoenix.dev", "phoenixauths/status") == {"patch"}
        assert allowed(rules, "", "events") == {"create"}
        assert {"list", "watch", "patch"} <= allowed(rules, "", "secrets")  # watch + label
    assert allowed(namespaced_rules(), "kopf.dev", "kopfpeerings") == {"list", "watch", "patch"}
    assert allowed(cluster_rules(True), "kopf.dev", "clusterkopfpeerings") == {"list", "watch", "patch"}


def test_no_verb_the_operator_never_uses():
    """Children are applied server-side (PATCH), never PUT; what is never switched off is never
    deleted; monitoring objects are not watched; Kopf posts core Events only."""
    for rule in RULES:
        assert "update" not in rule["verbs"], rule
    for resource in ("configmaps", "poddisruptionbudgets", "horizontalpodautoscalers"):
        group = {"configmaps": "", "poddisruptionbudgets": "policy"}.get(resource, "autoscaling")
        assert "delete" not in allowed(RULES, group, resource), resource
    assert allowed(RULES, "monitoring.coreos.com", "prometheusrules") == {"get", "create", "patch", "delete"}
    assert not allowed(RULES, "events.k8s.io", "events")
    assert allowed(RULES, "", "namespaces") == {"list", "watch"}
    assert allowed(RULES, "apiextensions.k8s.io", "customresourcedefinitions") == {"list", "watch"}


def test_no_wildcards_and_no_escalation():
    for rule in RULES:
        assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"]
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])
        assert not {
            "roles",
            "clusterroles",
            "rolebindings",
            "clusterrolebindings",
            "pods",
            "pods/exec",
        } & set(rule["resources"])


def test_named_namespaces_get_no_cluster_wide_write_or_secret():
    """With named namespaces the ClusterRole only reads CRDs and namespace names: no Secret, no
    write anywhere outside the Roles of the namespaces served."""
    cluster = cluster_rules(all_namespaces=False)
    assert {r for rule in cluster for r in rule["resources"]} == {"customresourcedefinitions", "namespaces"}
    assert {v for rule in cluster for v in rule["verbs"]} == {"list", "watch"}
    all_ns = {r for rule in cluster_rules(all_namespaces=True) for r in rule["resources"]}
    assert "secrets" in all_ns and "namespaces" not in all_ns  # Kopf lists namespaces only when named


def test_the_chart_template_is_rendered_from_these_rules():
    out = subprocess.run([sys.executable, str(RBAC_PY)], capture_output=True, text=True, check=True).stdout
    blocks = {}
    for chunk in out.split('{{- define "')[1:]:
        name, _, body = chunk.partition('" -}}')
        blocks[name] = yaml.safe_load(body.split("{{- end -}}")[0])
    assert blocks == {
        "phoenix-operator.rbac.namespaced": namespaced_rules(),
        "phoenix-operator.rbac.clusterNamed": cluster_rules(False),
        "phoenix-operator.rbac.clusterAll": cluster_rules(True),
    }
