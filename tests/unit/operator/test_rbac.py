"""RBAC rules cover every kind the operator touches, with the verbs it uses, and nothing broad."""

from __future__ import annotations

from phoenix_operator.kube import KINDS
from phoenix_operator.rbac import RULES, cluster_rules, namespaced_rules


def allowed(group: str, resource: str) -> set[str]:
    verbs: set[str] = set()
    for rule in RULES:
        if group in rule["apiGroups"] and resource in rule["resources"]:
            verbs |= set(rule["verbs"])
    return verbs


def test_every_applied_kind_is_covered():
    for kind in KINDS.values():
        group = "" if kind.api_version == "v1" else kind.api_version.split("/")[0]
        verbs = allowed(group, kind.plural)
        assert {"get", "patch"} <= verbs, kind
    assert {"patch"} <= allowed("auth.phoenix.dev", "phoenixauths/status")
    assert {"create"} <= allowed("", "events")
    assert {"list", "watch", "patch"} <= allowed("kopf.dev", "kopfpeerings")


def test_no_wildcards_and_no_escalation():
    for rule in RULES:
        assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"]
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])
        assert not {"roles", "clusterroles", "rolebindings", "clusterrolebindings", "pods/exec"} & set(
            rule["resources"]
        )


def test_split_between_role_and_cluster_role():
    assert len(namespaced_rules()) + len(cluster_rules()) == len(RULES)
    assert {r for rule in cluster_rules() for r in rule["resources"]} == {
        "clusterkopfpeerings",
        "customresourcedefinitions",
        "namespaces",
    }
