"""`helm install` / `upgrade` / `uninstall` of the chart on a real API server, the operator's RBAC
as the API server evaluates it (`kubectl auth can-i --as=<the ServiceAccount>`), and the plain
manifests accepted by the API server."""

from __future__ import annotations

import json

import pytest
from e2e_kube import (
    CHART,
    CRD_NAME,
    MANIFESTS,
    OPERATOR_NS,
    RELEASE,
    SERVICE_ACCOUNT,
    ControlPlane,
    crd_established,
    wait_until,
)

SA = f"system:serviceaccount:{OPERATOR_NS}:{SERVICE_ACCOUNT}"


def test_install_established_crd_and_ready_operator(control_plane: ControlPlane, helm_release: str) -> None:
    cp = control_plane
    status = json.loads(cp.helm("status", helm_release, "-n", OPERATOR_NS, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    assert crd_established(cp)
    deploy = cp.get("deployment", RELEASE, OPERATOR_NS)
    wait_until(
        lambda: cp.get("deployment", RELEASE, OPERATOR_NS)["status"].get("readyReplicas") == 1,
        30,
        "the operator Deployment Ready (kwok)",
    )
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert cp.exists("clusterkopfpeering", "phoenix-operator")
    dashboards = cp.kubectl(
        "get", "configmap", "-n", OPERATOR_NS, "-l", "grafana_dashboard=1", "-o", "name"
    ).stdout
    assert dashboards.strip() == f"configmap/{RELEASE}-dashboard"


CAN_I = [
    # (verb, resource, namespace, expected)
    ("watch", "phoenixauths.auth.phoenix.dev", None, True),
    ("patch", "phoenixauths.auth.phoenix.dev/status", None, True),
    ("delete", "phoenixauths.auth.phoenix.dev", None, False),
    ("patch", "deployments.apps", "default", True),
    ("delete", "jobs.batch", "default", True),
    ("create", "poddisruptionbudgets.policy", "default", True),
    ("patch", "horizontalpodautoscalers.autoscaling", "default", True),
    ("get", "secrets", "default", True),
    ("watch", "secrets", "default", True),  # referenced Secrets are watched so a change rolls the pods
    ("update", "nodes", None, False),
    ("create", "events", "default", True),
    ("delete", "pods", "default", False),
    ("create", "pods/exec", "default", False),
    ("get", "nodes", None, False),
    ("create", "clusterroles.rbac.authorization.k8s.io", None, False),
    ("create", "customresourcedefinitions.apiextensions.k8s.io", None, False),
    ("patch", "clusterkopfpeerings.kopf.dev", None, True),
    # Only the verbs the operator uses: server-side apply is a PATCH, never a PUT; what it never
    # switches off it never deletes; Kopf needs no namespace list with --all-namespaces.
    ("update", "deployments.apps", "default", False),
    ("update", "secrets", "default", False),
    ("delete", "configmaps", "default", False),
    ("delete", "horizontalpodautoscalers.autoscaling", "default", False),
    ("update", "phoenixauths.auth.phoenix.dev/status", None, False),
    ("create", "events.events.k8s.io", "default", False),
    ("list", "namespaces", None, False),
]


@pytest.mark.parametrize(
    ("verb", "resource", "ns", "expected"),
    [pytest.param(*row, id=f"{row[0]}-{row[1]}") for row in CAN_I],
)
def test_operator_service_account_has_least_privilege(
    control_plane: ControlPlane, helm_release: str, verb: str, resource: str, ns: str | None, expected: bool
) -> None:
    args = ["auth", "can-i", verb, resource, f"--as={SA}"]
    args += ["-n", ns] if ns else ["--all-namespaces"]
    result = control_plane.kubectl(*args, check=False)
    answer = result.stdout.strip()
    assert answer == ("yes" if expected else "no"), f"can-i {verb} {resource}: {answer} {result.stderr}"


def test_second_release_installs_upgrades_and_uninstalls(control_plane: ControlPlane, namespace: str) -> None:
    """A namespaced second release (its own peering, Role instead of cluster-wide rules)."""
    cp, ns = control_plane, namespace
    release = "phx-second"
    fullname = f"{release}-phoenix-operator"
    base = ["-n", ns, "--wait", "--timeout", "90s"]
    cp.helm(
        "install", release, str(CHART), *base, "--skip-crds",
        "--set", "operator.peeringName=phx-second", "--set", f"operator.watchNamespaces={{{ns}}}",
    )  # fmt: skip
    assert cp.exists("role", fullname, ns)
    assert cp.exists("kopfpeering", "phx-second", ns)
    assert cp.get("deployment", fullname, ns)["status"]["readyReplicas"] == 1
    sa = f"system:serviceaccount:{ns}:{fullname}"
    assert (
        cp.kubectl("auth", "can-i", "patch", "deployments.apps", f"--as={sa}", "-n", ns).stdout.strip()
        == "yes"
    )
    assert (
        cp.kubectl(
            "auth", "can-i", "patch", "deployments.apps", f"--as={sa}", "-n", "default", check=False
        ).stdout.strip()
        == "no"
    )
    assert (
        cp.kubectl(
            "auth", "can-i", "get", "secrets", f"--as={sa}", "-n", "default", check=False
        ).stdout.strip()
        == "no"
    )

    cp.helm(
        "upgrade", release, str(CHART), *base, "--reuse-values",
        "--set", "replicaCount=2", "--set", "sample.enabled=true", "--set", "sample.name=upgraded",
    )  # fmt: skip
    history = json.loads(cp.helm("history", release, "-n", ns, "-o", "json").stdout)
    assert [h["revision"] for h in history] == [1, 2]
    assert history[-1]["status"] == "deployed"
    assert cp.get("deployment", fullname, ns)["status"]["readyReplicas"] == 2
    sample = cp.get("pxa", "upgraded", ns)
    assert sample["spec"]["redis"]["mode"] == "managed"  # the CRD's defaults applied

    bad = cp.helm(
        "upgrade", release, str(CHART), "-n", ns, "--reuse-values", "--set", "replicaCount=-1", check=False
    )
    assert bad.returncode != 0 and "replicaCount" in bad.stderr

    cp.helm("uninstall", release, "-n", ns, "--wait", "--timeout", "60s")
    for kind, name, namespace_ in (
        ("deployment", fullname, ns),
        ("serviceaccount", fullname, ns),
        ("role", fullname, ns),
        ("rolebinding", fullname, ns),
        ("clusterrole", fullname, None),
        ("clusterrolebinding", fullname, None),
        ("kopfpeering", "phx-second", ns),
        ("pxa", "upgraded", ns),
    ):
        wait_until(lambda k=kind, n=name, s=namespace_: not cp.exists(k, n, s), 30, f"{kind}/{name} removed")
    # Helm never deletes CRDs (that would delete every user's PhoenixAuth).
    assert cp.exists("crd", CRD_NAME)


def test_default_install_can_touch_secrets_in_its_own_namespace_only(
    control_plane: ControlPlane, namespace: str
) -> None:
    """`helm install` with no values: the operator serves the release namespace; its ServiceAccount
    may read and write Secrets there and in no other namespace, and its ClusterRole holds no Secret."""
    cp, ns = control_plane, namespace
    release = "phx-default"
    fullname = f"{release}-phoenix-operator"
    cp.helm("install", release, str(CHART), "-n", ns, "--skip-crds", "--wait", "--timeout", "90s")
    try:
        sa = f"system:serviceaccount:{ns}:{fullname}"

        def can(verb: str, resource: str, where: str) -> str:
            args = ["auth", "can-i", verb, resource, f"--as={sa}", "-n", where]
            return cp.kubectl(*args, check=False).stdout.strip()

        assert can("get", "secrets", ns) == "yes" and can("watch", "secrets", ns) == "yes"
        for other in ("default", OPERATOR_NS, "kube-system"):
            assert can("get", "secrets", other) == "no", other
            assert can("list", "secrets", other) == "no", other
            assert can("patch", "deployments.apps", other) == "no", other
        cluster_role = cp.get("clusterrole", fullname)
        assert not [r for r in cluster_role["rules"] if "secrets" in r["resources"]]
        assert cp.exists("kopfpeering", "phoenix-operator", ns)
        args = cp.get("deployment", fullname, ns)["spec"]["template"]["spec"]["containers"][0]["args"]
        assert f"--namespace={ns}" in args and "--all-namespaces" not in args
    finally:
        cp.helm("uninstall", release, "-n", ns, "--wait", "--timeout", "60s", check=False)


def test_plain_manifests_are_accepted_by_the_api_server(
    control_plane: ControlPlane, helm_release: str
) -> None:
    manifest = str(MANIFESTS / "phoenix-operator.yaml")
    result = control_plane.kubectl(
        "apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", manifest
    )
    assert "CustomResourceDefinition" in result.stdout or "customresourcedefinition" in result.stdout
    assert "deployment.apps/phoenix-operator" in result.stdout
