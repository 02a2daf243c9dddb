"""The Helm chart, rendered by the real `helm` binary: lint, least-privilege RBAC equal to what the
operator declares it uses, a restricted operator pod, schema-checked values, and no drift between
crds/ → the chart's crds/ → manifests/.

Needs the helm binary built by scripts/build-control-plane.sh (skipped without it, failed in CI).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from phoenix_operator import rbac
from phoenix_operator.images import PROJECT_IMAGE_PREFIX

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "phoenix-operator"


@pytest.fixture(scope="module")
def helm() -> str:
    bin_dir = subprocess.run(
        ["bash", str(REPO / "scripts" / "control-plane.sh"), "bin"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    path = Path(bin_dir) / "helm"
    if not path.exists():
        reason = f"helm not built at {path}: run scripts/build-control-plane.sh"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return str(path)


def run_helm(helm: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([helm, *args], capture_output=True, text=True, timeout=60, check=False)
    if check:
        assert result.returncode == 0, f"helm {' '.join(args)}: {result.stderr}"
    return result


def render(helm: str, *sets: str, include_crds: bool = False) -> list[dict[str, Any]]:
    args = ["template", "phoenix-operator", str(CHART), "--namespace", "phoenix-system"]
    if include_crds:
        args.append("--include-crds")
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(run_helm(helm, *args).stdout) if d]


def find(docs: list[dict[str, Any]], kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
    return [
        d
        for d in docs
        if d["kind"] == kind and (namespace is None or d["metadata"].get("namespace") == namespace)
    ]


def normalize(rules: list[Any]) -> set[tuple[str, str, str]]:
    """Rules as (group, resource, verb) triples, so grouping and order do not matter."""
    return {
        (g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


def test_helm_lint_is_clean(helm: str) -> None:
    for sets in (
        [],
        ["sample.enabled=true", "operator.watchNamespaces={team-a,team-b}"],
        ["operator.watchAllNamespaces=true"],
    ):
        args = ["lint", "--strict", str(CHART)]
        for s in sets:
            args += ["--set", s]
        result = run_helm(helm, *args)
        assert "0 chart(s) failed" in result.stdout, result.stdout


def test_default_install_serves_only_the_release_namespace(helm: str) -> None:
    """Without values the operator gets a Role in its own namespace and, cluster-wide, only reads
    CRDs and namespace names: it can read no Secret of any other namespace."""
    docs = render(helm)
    (cluster_role,) = find(docs, "ClusterRole")
    assert normalize(cluster_role["rules"]) == normalize(rbac.cluster_rules(all_namespaces=False))
    assert not {t for t in normalize(cluster_role["rules"]) if t[1] == "secrets"}
    (role,) = find(docs, "Role")
    assert role["metadata"]["namespace"] == "phoenix-system"
    assert normalize(role["rules"]) == normalize(rbac.namespaced_rules())
    assert [p["metadata"]["namespace"] for p in find(docs, "KopfPeering")] == ["phoenix-system"]
    assert not find(docs, "ClusterKopfPeering")
    (deploy,) = find(docs, "Deployment")
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=phoenix-system" in args and "--all-namespaces" not in args


def test_all_namespaces_is_an_explicit_choice_and_excludes_a_list(helm: str) -> None:
    result = run_helm(
        helm, "template", "x", str(CHART),
        "--set", "operator.watchAllNamespaces=true", "--set", "operator.watchNamespaces={a}",
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "operator.watchAllNamespaces and operator.watchNamespaces exclude each other" in result.stderr


def test_cluster_wide_rbac_equals_what_the_operator_uses(helm: str) -> None:
    docs = render(helm, "operator.watchAllNamespaces=true")
    (role,) = find(docs, "ClusterRole")
    assert normalize(role["rules"]) == normalize(rbac.cluster_rules(all_namespaces=True))
    assert not find(docs, "Role")
    (binding,) = find(docs, "ClusterRoleBinding")
    (sa,) = find(docs, "ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "phoenix-system"}
    ]
    assert [p["metadata"]["name"] for p in find(docs, "ClusterKopfPeering")] == ["phoenix-operator"]


def test_namespaced_rbac_is_a_role_per_watched_namespace(helm: str) -> None:
    docs = render(helm, "operator.watchNamespaces={team-a,team-b}")
    (cluster_role,) = find(docs, "ClusterRole")
    assert normalize(cluster_role["rules"]) == normalize(rbac.cluster_rules(all_namespaces=False))
    for ns in ("team-a", "team-b"):
        (role,) = find(docs, "Role", ns)
        assert normalize(role["rules"]) == normalize(rbac.namespaced_rules())
        (binding,) = find(docs, "RoleBinding", ns)
        assert binding["subjects"][0]["namespace"] == "phoenix-system"
        assert [p["metadata"]["name"] for p in find(docs, "KopfPeering", ns)] == ["phoenix-operator"]
    assert not find(docs, "ClusterKopfPeering")
    (deploy,) = find(docs, "Deployment")
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args
    assert "--namespace=team-b" in args
    assert "--all-namespaces" not in args


def test_no_rule_grants_wildcards_or_workload_internals(helm: str) -> None:
    triples = normalize(find(render(helm), "ClusterRole")[0]["rules"])
    assert not [t for t in triples if "*" in t], "wildcards are not least privilege"
    assert not [t for t in triples if t[1] in {"pods", "pods/exec", "nodes", "clusterroles", "roles"}]


def test_operator_pod_is_restricted_and_probed(helm: str) -> None:
    (deploy,) = find(render(helm), "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    # The probes hit the Kopf liveness endpoint the operator is told to serve.
    assert "--liveness-port=8080" in container["args"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "metrics": 8081}
    assert "--metrics-port=8081" in container["args"]
    assert container["command"] == ["phoenix-operator"]


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("replicaCount=-1", "replicaCount"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("operator.healthPort=70000", "healthPort"),
        ("operator.watchNamespaces={Not_A_Namespace}", "watchNamespaces"),
        ("unknownKey=1", "unknownKey"),
    ],
)
def test_values_schema_rejects_bad_values_naming_them(helm: str, value: str, field: str) -> None:
    result = run_helm(helm, "template", "x", str(CHART), "--set", value, check=False)
    assert result.returncode != 0
    assert field in result.stderr


def test_sample_phoenixauth_is_optional(helm: str) -> None:
    assert not find(render(helm), "PhoenixAuth")
    (sample,) = find(render(helm, "sample.enabled=true"), "PhoenixAuth")
    assert sample["apiVersion"] == "auth.phoenix.dev/v1alpha1"
    assert sample["spec"]["database"]["secretRef"]["name"] == "phoenix-db"


def test_dashboard_ships_as_a_configmap_for_the_grafana_sidecar(helm: str) -> None:
    (cm,) = [d for d in find(render(helm), "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(cm["data"]["phoenix.json"])
    assert shipped == json.loads((CHART / "dashboards" / "phoenix.json").read_text())
    assert not find(render(helm, "dashboard.enabled=false"), "ConfigMap")


def test_chart_crds_are_copies_of_the_repo_crds() -> None:
    """crds/ is the source of truth; the chart ships a generated copy (scripts/gen-manifests.sh)."""
    repo = {p.name: p.read_text() for p in (REPO / "crds").glob("*.yaml")}
    chart = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    assert repo, "no CRDs in crds/"
    assert set(chart) == set(repo), "run scripts/gen-manifests.sh"
    for name, text in repo.items():
        body = "\n".join(line for line in chart[name].splitlines() if not line.startswith("# Generated by"))
        assert yaml.safe_load_all(body) and list(yaml.safe_load_all(body)) == list(
            yaml.safe_load_all(text)
        ), f"helm/phoenix-operator/crds/{name} drifted from crds/{name}: run scripts/gen-manifests.sh"


def test_manifests_are_generated_from_the_chart(helm: str) -> None:
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "gen-manifests.sh"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HELM": helm},
        check=False,
    )
    assert result.returncode == 0, (
        f"manifests/ drifted from the chart; run scripts/gen-manifests.sh\n{result.stderr}"
    )
    docs = [d for d in yaml.safe_load_all((REPO / "manifests" / "phoenix-operator.yaml").read_text()) if d]
    kinds = {d["kind"] for d in docs}
    assert {"CustomResourceDefinition", "Deployment", "ClusterRole", "ServiceAccount"} <= kinds


@pytest.mark.parametrize("sample", sorted(p.name for p in (REPO / "manifests" / "samples").glob("*.yaml")))
def test_samples_are_phoenixauths_with_their_secrets(sample: str) -> None:
    docs = [d for d in yaml.safe_load_all((REPO / "manifests" / "samples" / sample).read_text()) if d]
    (pxa,) = [d for d in docs if d["kind"] == "PhoenixAuth"]
    secrets = {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"}
    assert pxa["spec"]["database"]["secretRef"]["name"] in secrets
    external = pxa["spec"].get("redis", {}).get("external")
    if external:
        assert external["secretRef"]["name"] in secrets


def test_there_are_the_three_samples() -> None:
    names = {p.name for p in (REPO / "manifests" / "samples").glob("*.yaml")}
    assert {"minimal.yaml", "external-redis.yaml", "full.yaml"} <= names


@pytest.mark.parametrize(
    "sets",
    [
        [],
        ["operator.watchNamespaces={team-a,team-b}", "operator.healthPort=9000"],
        ["operator.watchAllNamespaces=true", "operator.allowedImagePrefixes={reg.example/a/,*}"],
    ],
)
def test_the_operator_cli_accepts_the_chart_s_arguments(helm: str, sets: list[str]) -> None:
    """The Deployment's args are parsed by the real `phoenix-operator` CLI (flag drift fails here)."""
    from phoenix_operator.cli import build_settings, parse_args

    (deploy,) = find(render(helm, *sets), "Deployment")
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    settings = build_settings(parse_args(container["args"]))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert settings.liveness_port == ports["health"]
    assert settings.metrics_port == ports["metrics"]
    assert settings.peering_name == "phoenix-operator"
    assert settings.resync_seconds == 300
    if not sets:
        assert settings.namespaces == ["phoenix-system"] and not settings.all_namespaces
        # The chart's default allow-list is the operator's own default (the project's images).
        assert settings.allowed_image_prefixes == [PROJECT_IMAGE_PREFIX]
    elif "operator.watchAllNamespaces=true" in sets:
        assert settings.all_namespaces
        assert settings.allowed_image_prefixes == ["reg.example/a/", "*"]
    else:
        assert settings.namespaces == ["team-a", "team-b"] and not settings.all_namespaces
