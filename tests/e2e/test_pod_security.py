"""Security posture of what the operator creates, checked by the real API server: every pod it
makes (auth service, managed Redis, migration Job) is admitted in a namespace that ENFORCES the
"restricted" Pod Security Standard, the managed Redis requires a password that lives only in a
Secret, and a NetworkPolicy lets only the auth pods reach it."""

from __future__ import annotations

import base64
import json

from e2e_kube import ControlPlane, OperatorProcess
from test_operator import apply_sample, owned_by, pxa, wait_ready

PSS = "pod-security.kubernetes.io"


def test_created_pods_pass_restricted_pss_and_redis_is_locked_down(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp, ns = control_plane, namespace
    cp.kubectl("label", "namespace", ns, f"{PSS}/enforce=restricted", f"{PSS}/enforce-version=latest")
    # The admission plugin is live: a pod that breaks the standard is refused in this namespace.
    bad = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "privileged-probe"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}]},
    }
    refused = cp.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(bad), check=False)
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr, refused.stderr

    apply_sample(cp, ns, "minimal.yaml")  # managed Redis, migrations on
    owner = wait_ready(cp, ns, "phoenix", operator)

    # Ready needs Ready pods: so the auth, Redis and migration pods were all admitted.
    pods = cp.get("pods", namespace=ns)["items"]
    components = {p["metadata"]["labels"].get("app.kubernetes.io/component") for p in pods}
    assert {"auth", "redis"} <= components, components
    jobs = cp.get("jobs", namespace=ns)["items"]
    assert jobs and all(j.get("status", {}).get("succeeded") for j in jobs)
    events = cp.get("events", namespace=ns)["items"]
    assert not [e for e in events if e.get("reason") == "FailedCreate"], "a controller could not create a pod"

    # Redis requires a user and password, read from the Secret: the password is in no pod spec.
    secret = cp.get("secret", "phoenix-redis-auth", ns)
    assert owned_by(secret, owner) and {"password", "REDIS_URL"} <= set(secret["data"])
    redis = cp.get("deployment", "phoenix-redis", ns)
    container = redis["spec"]["template"]["spec"]["containers"][0]
    command = " ".join(container.get("command", []) + container.get("args", []))
    # the default user off, the auth pods' ACL user with the password from stdin ($REDIS_PASSWORD)
    assert "user default off" in command and "user phoenix-auth on >%s" in command
    refs = [e.get("valueFrom", {}).get("secretKeyRef", {}) for e in container.get("env", [])]
    assert any(r.get("name") == "phoenix-redis-auth" for r in refs)
    password = base64.b64decode(secret["data"]["password"]).decode()
    assert len(password) >= 24
    for kind in ("deployments", "pods", "configmaps"):
        assert password not in json.dumps(cp.get(kind, namespace=ns)), f"the Redis password is in {kind}"
    assert password not in json.dumps(pxa(cp, ns, "phoenix").get("status", {}))

    # Only the auth pods may reach Redis, and only on its port.
    policy = cp.get("networkpolicy", "phoenix-redis", ns)
    assert owned_by(policy, owner)
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "redis"
    (rule,) = spec["ingress"]
    assert [p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in rule["from"]] == ["auth"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]
