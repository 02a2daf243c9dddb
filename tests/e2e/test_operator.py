"""The operator on a real API server: samples applied with kubectl become Ready with every child,
`kubectl get pxa` / `kubectl describe pxa` show real values, drift is repaired, a spec change
rolls the Deployment, deleting the PhoenixAuth garbage-collects its children.

One operator process serves this module (as the chart's ServiceAccount, so its RBAC is proven too);
kwok makes the pods Ready and completes the migration Job.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_kube import MANIFESTS, ControlPlane, OperatorProcess, wait_until

READY_TIMEOUT = 90
GROUP = "auth.phoenix.dev"


@pytest.fixture(scope="module")
def module_operator(
    operator_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    op = OperatorProcess(operator_kubeconfig, log, ["--priority=100", "--resync-seconds=10"]).start()
    try:
        wait_until(op.healthy, 60, "the operator's liveness endpoint")
        yield op
    finally:
        op.stop()
        print(f"\noperator log: {log}")


def pxa(cp: ControlPlane, ns: str, name: str) -> dict[str, Any]:
    return cp.get("pxa", name, ns)


def wait_ready(
    cp: ControlPlane, ns: str, name: str, op: OperatorProcess, generation: int | None = None
) -> dict:
    def ready() -> dict[str, Any] | None:
        obj = pxa(cp, ns, name)
        cond = cp.condition(obj, "Ready") or {}
        status = obj.get("status", {})
        gen = generation or obj["metadata"]["generation"]
        if cond.get("status") == "True" and status.get("observedGeneration") == gen:
            return obj
        return None

    try:
        return wait_until(ready, READY_TIMEOUT, f"PhoenixAuth {ns}/{name} Ready")
    except AssertionError:
        print(cp.kubectl("describe", "pxa", name, "-n", ns, check=False).stdout)
        print(op.logs()[-5000:])
        raise


def owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    return any(
        ref["uid"] == owner["metadata"]["uid"] and ref.get("controller") is True
        for ref in obj["metadata"].get("ownerReferences", [])
    )


def apply_sample(cp: ControlPlane, ns: str, sample: str) -> None:
    cp.kubectl("apply", "-n", ns, "-f", str(MANIFESTS / "samples" / sample))


def printer_columns(cp: ControlPlane, ns: str, name: str) -> dict[str, str]:
    out = cp.kubectl("get", "pxa", name, "-n", ns).stdout.splitlines()
    header = re.split(r"\s{2,}", out[0].strip())
    values = re.split(r"\s{2,}", out[1].strip())
    return dict(zip(header, values, strict=True))


def test_minimal_sample_becomes_ready_with_all_children(
    control_plane: ControlPlane, module_operator: OperatorProcess, namespace: str
) -> None:
    cp, ns = control_plane, namespace
    apply_sample(cp, ns, "minimal.yaml")
    obj = wait_ready(cp, ns, "phoenix", module_operator)

    children = {
        ("deployment", "phoenix"),
        ("service", "phoenix"),
        ("service", "phoenix-admin"),
        ("secret", "phoenix-phoenix-keys"),
        ("configmap", "phoenix-config"),
        ("poddisruptionbudget", "phoenix"),
        ("horizontalpodautoscaler", "phoenix"),
        ("deployment", "phoenix-redis"),
        ("service", "phoenix-redis"),
        ("secret", "phoenix-redis-auth"),
    }
    for kind, name in children:
        child = cp.get(kind, name, ns)
        assert owned_by(child, obj), f"{kind}/{name} has no controller ownerReference to the PhoenixAuth"
    jobs = cp.get("jobs", namespace=ns)["items"]
    assert len(jobs) == 1 and owned_by(jobs[0], obj)
    assert (cp.condition(jobs[0], "Complete") or {}).get("status") == "True"

    deploy = cp.get("deployment", "phoenix", ns)
    assert deploy["status"]["readyReplicas"] == 2
    cm = cp.get("configmap", "phoenix-config", ns)
    # floor((50 budget - 5 reserved) / 4 maxReplicas) = 11 per pod, 1 worker.
    assert cm["data"]["PHOENIX_MAX_DB_CONNECTIONS"] == "11"
    assert obj["status"]["poolPerPod"] == 11

    # What a platform team reads at a glance: real values in every printer column.
    cols = printer_columns(cp, ns, "phoenix")
    assert cols["READY"] == "True"
    assert cols["REPLICAS"] == "2/2"
    assert cols["POOL/POD"] == "11"
    assert cols["CACHE"] == "L1+L2"
    assert cols["MIGRATIONS"] == "Succeeded"
    assert re.fullmatch(r"\d+[smh]", cols["AGE"])
    wide = cp.kubectl("get", "pxa", "phoenix", "-n", ns, "-o", "wide").stdout
    assert "PHASE" in wide and re.search(r"\bReady\b", wide.splitlines()[1])
    # The short name and category work.
    assert "phoenix" in cp.kubectl("get", "phoenix", "-n", ns).stdout


def test_an_object_with_a_child_s_name_made_before_is_refused_and_kept(
    control_plane: ControlPlane, module_operator: OperatorProcess, namespace: str
) -> None:
    """The operator creates a new PhoenixAuth's children without reading each first; the API
    server's own check still keeps it off an object someone else made with a child's name."""
    cp, ns = control_plane, namespace
    cp.kubectl("create", "configmap", "phoenix-config", "-n", ns, "--from-literal=mine=yes")
    uid = cp.get("configmap", "phoenix-config", ns)["metadata"]["uid"]
    apply_sample(cp, ns, "minimal.yaml")

    def refused() -> dict[str, Any] | None:
        cond = cp.condition(pxa(cp, ns, "phoenix"), "Ready") or {}
        return cond if cond.get("reason") == "ChildNameConflict" else None

    cond = wait_until(refused, READY_TIMEOUT, "Ready=False with reason ChildNameConflict")
    assert f"ConfigMap {ns}/phoenix-config exists and is not owned by this PhoenixAuth" in cond["message"]
    mine = cp.get("configmap", "phoenix-config", ns)
    assert mine["data"] == {"mine": "yes"} and not mine["metadata"].get("ownerReferences")
    assert mine["metadata"]["uid"] == uid
    cp.kubectl("delete", "configmap", "phoenix-config", "-n", ns)
    obj = wait_ready(cp, ns, "phoenix", module_operator)  # the next resync creates its own
    assert owned_by(cp.get("configmap", "phoenix-config", ns), obj)


def test_describe_shows_conditions_and_events_without_secrets(
    control_plane: ControlPlane, module_operator: OperatorProcess, namespace: str
) -> None:
    cp, ns = control_plane, namespace
    apply_sample(cp, ns, "minimal.yaml")
    wait_ready(cp, ns, "phoenix", module_operator)
    wait_until(
        lambda: "AllComponentsReady" in cp.kubectl("describe", "pxa", "phoenix", "-n", ns).stdout,
        30,
        "the AllComponentsReady event",
    )
    text = cp.kubectl("describe", "pxa", "phoenix", "-n", ns).stdout
    for ctype in (
        "Ready",
        "Progressing",
        "Degraded",
        "MigrationsComplete",
        "RedisReady",
        "MonitoringConfigured",
    ):
        assert re.search(rf"Type:\s+{ctype}\b", text), f"condition {ctype} missing from kubectl describe"
    assert re.search(r"Events:.*Normal\s+AllComponentsReady", text, re.S)
    assert "PrometheusOperatorCRDsMissing" in text  # no monitoring CRDs here, and status says why
    # Secrets never appear in status or events.
    redis_secret = cp.get("secret", "phoenix-redis-auth", ns)
    assert "phoenix:phoenix@" not in text
    for value in redis_secret["data"].values():
        assert base64.b64decode(value).decode() not in text


def test_missing_secret_is_reported_then_recovers(
    control_plane: ControlPlane, module_operator: OperatorProcess, namespace: str
) -> None:
    """A PhoenixAuth whose database Secret does not exist yet: Ready=False with a reason and a
    message naming the Secret (what `kubectl describe` shows), then Ready once the Secret exists
    (referenced Secrets are watched)."""
    cp, ns = control_plane, namespace
    body = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "PhoenixAuth",
        "metadata": {"name": "late"},
        "spec": {"database": {"secretRef": {"name": "late-db"}, "connectionBudget": 30}},
    }
    cp.apply(body, namespace=ns)

    def reported() -> dict[str, Any] | None:
        cond = cp.condition(pxa(cp, ns, "late"), "Ready") or {}
        return (
            cond if cond.get("status") == "False" and cond.get("reason") == "DatabaseSecretMissing" else None
        )

    cond = wait_until(reported, 60, "Ready=False DatabaseSecretMissing")
    assert f"{ns}/late-db" in cond["message"]
    # What `kubectl describe` shows the user: the condition with its reason and the Secret's name.
    described = cp.kubectl("describe", "pxa", "late", "-n", ns).stdout
    assert re.search(r"Reason:\s+DatabaseSecretMissing", described)
    assert f"Secret {ns}/late-db with key DATABASE_URL not found" in described
    assert not cp.exists("deployment", "late", ns), "nothing is deployed without its database Secret"
    row = cp.kubectl("get", "pxa", "late", "-n", ns, "--no-headers").stdout.split()
    assert row[:2] == ["late", "False"]

    cp.kubectl(
        "create", "secret", "generic", "late-db", "-n", ns, "--from-literal=DATABASE_URL=postgresql://x@db/y"
    )
    wait_ready(cp, ns, "late", module_operator)


def test_external_redis_sample_creates_no_redis(
    control_plane: ControlPlane, module_operator: OperatorProcess, namespace: str
) -> None:
    cp, ns = control_plane, namespace
    apply_sample(cp, ns, "external-redis.yaml")
    obj = wait_ready(cp, ns, "phoenix-ext", module_operator)
    assert not cp.exists("deployment", "phoenix-ext-redis", ns)
    assert obj["status"]["redis"]["mode"] == "external"
    assert obj["status"]["poolPerPod"] == 8  # floor((40 - 5) / 4)
    env = cp.get("deployment", "phoenix-ext", ns)["spec"]["template"]["spec"]["containers"][0]["env"]
    redis_env = next(e for e in env if e["name"] == "REDIS_URL")
    assert redis_env["valueFrom"]["secretKeyRef"] == {"name": "phoenix-redis", "key": "REDIS_URL"}


def test_full_sample_becomes_ready(
    control_plane: ControlPlane, module_operator: OperatorProcess, namespace: str
) -> None:
    cp, ns = control_plane, namespace
    apply_sample(cp, ns, "full.yaml")
    obj = wait_ready(cp, ns, "phoenix-full", module_operator)
    # floor((120 - 10) / 6) = 18 per pod, 2 workers → 9 per process.
    assert obj["status"]["poolPerPod"] == 18
    assert cp.get("configmap", "phoenix-full-config", ns)["data"]["PHOENIX_MAX_DB_CONNECTIONS"] == "9"
    assert cp.get("deployment", "phoenix-full", ns)["status"]["readyReplicas"] == 3
    hpa = cp.get("horizontalpodautoscaler", "phoenix-full", ns)
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 6)


def _uid(cp: ControlPlane, kind: str, name: str, ns: str) -> str | None:
    if not cp.exists(kind, name, ns):
        return None
    return str(cp.get(kind, name, ns)["metadata"]["uid"])


def test_children_deleted_or_edited_by_hand_are_restored(
    control_plane: ControlPlane, module_operator: OperatorProcess, namespace: str
) -> None:
    cp, ns = control_plane, namespace
    apply_sample(cp, ns, "minimal.yaml")
    wait_ready(cp, ns, "phoenix", module_operator)

    old = _uid(cp, "service", "phoenix", ns)
    cp.kubectl("delete", "service", "phoenix", "-n", ns)
    wait_until(
        lambda: _uid(cp, "service", "phoenix", ns) not in (None, old), 30, "the Service to be re-created"
    )

    old_cm = _uid(cp, "configmap", "phoenix-config", ns)
    cp.kubectl("delete", "configmap", "phoenix-config", "-n", ns)
    wait_until(
        lambda: _uid(cp, "configmap", "phoenix-config", ns) not in (None, old_cm),
        30,
        "the ConfigMap re-created",
    )

    cp.kubectl(
        "patch", "configmap", "phoenix-config", "-n", ns, "--type=merge", "-p",
        json.dumps({"data": {"PHOENIX_MAX_DB_CONNECTIONS": "500"}}),
    )  # fmt: skip
    wait_until(
        lambda: cp.get("configmap", "phoenix-config", ns)["data"]["PHOENIX_MAX_DB_CONNECTIONS"] == "11",
        30,
        "the pool size put back in the ConfigMap",
    )

    image_path = "/spec/template/spec/containers/0/image"
    patch = json.dumps([{"op": "replace", "path": image_path, "value": "evil/img:1"}])
    cp.kubectl("patch", "deployment", "phoenix", "-n", ns, "--type=json", "-p", patch)
    wait_until(
        lambda: (
            cp.get("deployment", "phoenix", ns)["spec"]["template"]["spec"]["containers"][0]["image"]
            != "evil/img:1"
        ),
        30,
        "the Deployment's image put back",
    )
    wait_ready(cp, ns, "phoenix", module_operator)


def test_spec_change_rolls_the_deployment(
    control_plane: ControlPlane, module_operator: OperatorProcess, namespace: str
) -> None:
    cp, ns = control_plane, namespace
    apply_sample(cp, ns, "minimal.yaml")
    wait_ready(cp, ns, "phoenix", module_operator)
    before = cp.get("deployment", "phoenix", ns)
    hash_before = before["spec"]["template"]["metadata"]["annotations"][f"{GROUP}/config-hash"]

    cp.kubectl(
        "patch", "pxa", "phoenix", "-n", ns, "--type=merge", "-p", '{"spec":{"cache":{"ttlSeconds":600}}}'
    )
    obj = wait_ready(cp, ns, "phoenix", module_operator, generation=2)
    assert obj["status"]["observedGeneration"] == 2
    after = cp.get("deployment", "phoenix", ns)
    assert after["spec"]["template"]["metadata"]["annotations"][f"{GROUP}/config-hash"] != hash_before
    assert after["metadata"]["generation"] > before["metadata"]["generation"]
    assert cp.get("configmap", "phoenix-config", ns)["data"]["PHOENIX_CACHE_TTL"] == "600"
    # A real rollout: a second ReplicaSet, and the Deployment converges on it.
    wait_until(
        lambda: len(cp.get("replicasets", namespace=ns)["items"]) >= 3,  # old auth, new auth, redis
        30,
        "a new ReplicaSet for the auth Deployment",
    )
    cp.kubectl("rollout", "status", "deployment/phoenix", "-n", ns, "--timeout=60s", timeout=70)


def test_referenced_secret_change_rolls_the_deployment(
    control_plane: ControlPlane, module_operator: OperatorProcess, namespace: str
) -> None:
    """Secrets are not watched (least privilege: no list/watch on Secrets); the resync timer (10 s
    in this module) notices the new DATABASE_URL and the config hash rolls the pods."""
    cp, ns = control_plane, namespace
    apply_sample(cp, ns, "minimal.yaml")
    wait_ready(cp, ns, "phoenix", module_operator)
    hash_before = cp.get("deployment", "phoenix", ns)["spec"]["template"]["metadata"]["annotations"][
        f"{GROUP}/config-hash"
    ]
    new_url = base64.b64encode(b"postgresql://phoenix:rotated@db.example.svc:5432/phoenix").decode()
    cp.kubectl(
        "patch",
        "secret",
        "phoenix-db",
        "-n",
        ns,
        "--type=merge",
        "-p",
        json.dumps({"data": {"DATABASE_URL": new_url}}),
    )
    wait_until(
        lambda: (
            cp.get("deployment", "phoenix", ns)["spec"]["template"]["metadata"]["annotations"][
                f"{GROUP}/config-hash"
            ]
            != hash_before
        ),
        45,
        "the config hash to change after the Secret changed",
    )


def test_deleting_the_phoenixauth_garbage_collects_its_children(
    control_plane: ControlPlane, module_operator: OperatorProcess, namespace: str
) -> None:
    cp, ns = control_plane, namespace
    apply_sample(cp, ns, "minimal.yaml")
    wait_ready(cp, ns, "phoenix", module_operator)
    cp.kubectl("delete", "pxa", "phoenix", "-n", ns, "--timeout=30s", timeout=40)

    def gone() -> bool:
        left = []
        for kind in (
            "deployments",
            "services",
            "jobs",
            "poddisruptionbudgets",
            "horizontalpodautoscalers",
            "pods",
        ):
            left += [f"{kind}/{i['metadata']['name']}" for i in cp.get(kind, namespace=ns)["items"]]
        left += [
            f"configmap/{i['metadata']['name']}"
            for i in cp.get("configmaps", namespace=ns)["items"]
            if i["metadata"]["name"] != "kube-root-ca.crt"
        ]
        left += [
            f"secret/{i['metadata']['name']}"
            for i in cp.get("secrets", namespace=ns)["items"]
            if i["metadata"]["name"] != "phoenix-db"  # the user's Secret is not owned, so it stays
        ]
        return not left

    wait_until(gone, 60, "the garbage collector to remove every child")
    assert cp.exists("secret", "phoenix-db", ns)


def test_paused_reconciles_nothing_and_says_so(
    control_plane: ControlPlane, module_operator: OperatorProcess, namespace: str
) -> None:
    cp, ns = control_plane, namespace
    apply_sample(cp, ns, "minimal.yaml")
    wait_ready(cp, ns, "phoenix", module_operator)
    cp.kubectl("patch", "pxa", "phoenix", "-n", ns, "--type=merge", "-p", '{"spec":{"paused":true}}')
    wait_until(lambda: pxa(cp, ns, "phoenix")["status"].get("phase") == "Paused", 30, "phase Paused")
    cp.kubectl("delete", "service", "phoenix", "-n", ns)
    # Give the operator a resync period (10 s here) to prove it leaves the Service alone.
    with pytest.raises(AssertionError):
        wait_until(lambda: cp.exists("service", "phoenix", ns), 15, "nothing (paused)")
    cp.kubectl("patch", "pxa", "phoenix", "-n", ns, "--type=merge", "-p", '{"spec":{"paused":false}}')
    wait_until(lambda: cp.exists("service", "phoenix", ns), 30, "the Service back after un-pausing")


def test_operator_exports_its_metrics(module_operator: OperatorProcess) -> None:
    text = module_operator.metrics()
    match = re.search(r'^phoenix_operator_reconciles_total\{result="success"\} (\S+)$', text, re.M)
    assert match and float(match.group(1)) > 0
    assert "phoenix_operator_reconcile_duration_seconds_bucket" in text
