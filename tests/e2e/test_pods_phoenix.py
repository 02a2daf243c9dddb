"""Phoenix run the way a platform team runs it: the chart installed with its default (real) operator
image, a PhoenixAuth whose migration Job, managed Redis and auth pods really run on the real node,
PostgreSQL on the host, and the seed's login through the auth Service.

Then what only real pods can show: /metrics and the admin API on the admin Service only, the signed
Redis (L2) cache on in every pod (the operator's signing key) and the managed Redis's ACL user, a pod
deleted under load, a rolling update under load, the operator pod killed, a database password
rotated. The tests of this module share one stack and run in file order (each leaves the stack Ready
for the next).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from e2e_kube import OPERATOR_NS, ControlPlane, wait_until
from e2e_pods import (
    SEED_EMAIL,
    VERSION,
    PodDatabase,
    Traffic,
    json_pods,
    login,
    ready_pods,
    service_url,
    wait_ready_pxa,
    wait_rollout,
)

NAME = "phoenix"
AUTH_SELECTOR = f"app.kubernetes.io/instance={NAME},app.kubernetes.io/component=auth"
OPERATOR_SELECTOR = "app.kubernetes.io/name=phoenix-operator"
SUMMARY_INTERVAL = 3


def _pxa(replicas: int = 2, extra_env: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "auth.phoenix.dev/v1alpha1",
        "kind": "PhoenixAuth",
        "metadata": {"name": NAME},
        "spec": {
            "database": {"secretRef": {"name": "phoenix-db"}, "connectionBudget": 40},
            "redis": {"mode": "managed"},
            "authService": {
                "replicas": {"min": replicas, "max": replicas + 1},
                "workers": 1,
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "384Mi"}},
                "extraEnv": extra_env
                or [{"name": "PHOENIX_SUMMARY_INTERVAL", "value": str(SUMMARY_INTERVAL)}],
            },
        },
    }


def _secret(db: PodDatabase, password: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "phoenix-db"},
        "type": "Opaque",
        "stringData": {"DATABASE_URL": db.url(password=password)},
    }


@pytest.fixture(scope="module")
def stack(
    pods_release: ControlPlane, pods_database: PodDatabase, real_namespace_module: str
) -> Iterator[dict[str, Any]]:
    """One PhoenixAuth on real pods with the seed's user, Ready; yields what the tests need."""
    cp, ns = pods_release, real_namespace_module
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    cp.apply(_secret(pods_database), namespace=ns)
    cp.apply(_pxa(), namespace=ns)
    wait_ready_pxa(cp, ns, NAME, timeout=300)
    timings["PhoenixAuth Ready"] = time.monotonic() - t0
    # The seed's user, created by the image's own CLI inside an auth pod.
    pod = ready_pods(cp, ns, AUTH_SELECTOR)[0]["metadata"]["name"]
    cp.kubectl("exec", "-n", ns, pod, "--", "phoenix-auth", "seed-demo", "20", timeout=120)
    yield {"cp": cp, "ns": ns, "base": service_url(cp, ns, NAME), "db": pods_database, "timings": timings}


def test_operator_pod_runs_the_image_the_chart_names(pods_release: ControlPlane) -> None:
    cp = pods_release
    pod = ready_pods(cp, OPERATOR_NS, OPERATOR_SELECTOR)[0]
    status = pod["status"]["containerStatuses"][0]
    assert status["image"] == f"ghcr.io/phoenix-dev/phoenix-operator:{VERSION}"
    assert status["imageID"].startswith("ghcr.io/phoenix-dev/phoenix-operator@sha256:")
    assert status["restartCount"] == 0, cp.kubectl(
        "logs", "-n", OPERATOR_NS, pod["metadata"]["name"], "--previous", check=False
    ).stdout
    who = cp.kubectl("exec", "-n", OPERATOR_NS, pod["metadata"]["name"], "--", "id").stdout
    assert "uid=10001(phoenix)" in who


def test_migration_job_runs_migrate_against_postgresql(stack: dict[str, Any]) -> None:
    cp, ns, db = stack["cp"], stack["ns"], stack["db"]
    jobs = json.loads(cp.kubectl("get", "jobs", "-n", ns, "-o", "json").stdout)["items"]
    migrate = [j for j in jobs if "-migrate-" in j["metadata"]["name"]]
    assert len(migrate) == 1 and migrate[0]["status"].get("succeeded") == 1, migrate
    logs = cp.kubectl("logs", "-n", ns, f"job/{migrate[0]['metadata']['name']}").stdout
    assert "idx_users_email_auth_covering" in logs, logs
    with psycopg.connect(db.url(host="127.0.0.1")) as conn:
        indexes = {r[0] for r in conn.execute("select indexname from pg_indexes where tablename = 'users'")}
    assert {"idx_users_email_auth_covering", "idx_users_id_session_data"} <= indexes


def test_seed_curl_through_the_auth_service(stack: dict[str, Any]) -> None:
    with httpx.Client() as client:
        response = login(client, stack["base"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"]["email"] == SEED_EMAIL
    assert body["session"]["sessionId"]
    assert "performance" in body
    health = httpx.get(f"{stack['base']}/api/phoenix/health", timeout=5).json()
    assert health["database"]["healthy"] is True


def _admin_base(cp: ControlPlane, ns: str) -> str:
    svc = cp.get("service", f"{NAME}-admin", ns)
    return f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"


def _pod_metrics(cp: ControlPlane, ns: str) -> dict[str, str]:
    """Each Ready auth pod's /metrics, read on its admin port (the container port named admin)."""
    out = {}
    for pod in ready_pods(cp, ns, AUTH_SELECTOR):
        port = next(p["containerPort"] for p in pod["spec"]["containers"][0]["ports"] if p["name"] == "admin")
        response = httpx.get(f"http://{pod['status']['podIP']}:{port}/metrics", timeout=5)
        assert response.status_code == 200, response.text
        out[pod["metadata"]["name"]] = response.text
    return out


def _sample_sum(text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_metrics_are_on_the_admin_service_and_not_on_the_public_one(stack: dict[str, Any]) -> None:
    """Finding 13 (operator part): /metrics and the admin API answer on the admin port only; the
    operator exposes it on `<name>-admin`, never on the Service users reach, and Prometheus (the
    ServiceMonitor, the prometheus.io annotations) scrapes it there."""
    cp, ns, base = stack["cp"], stack["ns"], stack["base"]
    admin = _admin_base(cp, ns)
    public = httpx.get(f"{base}/metrics", timeout=5)
    assert public.status_code == 404, public.text
    scraped = httpx.get(f"{admin}/metrics", timeout=5)
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    assert _sample_sum(scraped.text, "phoenix_http_request_duration_seconds_count") > 0
    template = cp.get("deployment", NAME, ns)["spec"]["template"]
    assert template["metadata"]["annotations"]["prometheus.io/port"] == admin.rsplit(":", 1)[1]
    # The admin API: the operator's generated token works on the admin Service only.
    keys = cp.get("secret", f"{NAME}-phoenix-keys", ns)["data"]
    token = base64.b64decode(keys["PHOENIX_ADMIN_TOKEN"]).decode()
    path = "/api/auth/admin/users/00000000-0000-0000-0000-000000000000/revoke-sessions"
    auth = {"Authorization": f"Bearer {token}"}
    assert httpx.post(f"{base}{path}", headers=auth, timeout=5).json()["error"] == "NOT_FOUND"
    wrong = httpx.post(f"{admin}{path}", headers={"Authorization": "Bearer " + "x" * 40}, timeout=5)
    assert wrong.status_code == 401, wrong.text
    right = httpx.post(f"{admin}{path}", headers=auth, timeout=5)
    assert right.status_code == 404 and right.json()["error"] == "USER_NOT_FOUND", right.text


def test_the_redis_l2_cache_is_on_and_serves_sessions_across_pods(stack: dict[str, Any]) -> None:
    """Finding 3 (operator part): every auth pod has the operator's signing key, so the signed L2
    cache is on (before, no pod had PHOENIX_CACHE_SIGNING_KEY and L2 was off everywhere); sessions
    created on one pod are then found in Redis by the others."""
    cp, ns, base = stack["cp"], stack["ns"], stack["base"]
    for pod in ready_pods(cp, ns, AUTH_SELECTOR):
        port = pod["spec"]["containers"][0]["ports"][0]["containerPort"]
        out = httpx.get(f"http://{pod['status']['podIP']}:{port}/api/phoenix/health", timeout=5).text
        stats = json.loads(out)["cache"]["stats"]
        assert stats["l2Enabled"] is True and stats["l2DisabledReason"] is None, stats
        assert stats["redis"] == {"configured": True, "healthy": True}, stats
    before = sum(
        _sample_sum(t, "phoenix_cache_requests_total", layer="l2", result="hit")
        for t in _pod_metrics(cp, ns).values()
    )
    tokens = _sessions(base, 6)
    with httpx.Client(timeout=5) as client:  # new connections: kube-proxy spreads them over the pods
        for _ in range(10):
            for token in tokens:
                r = client.get(
                    f"{base}/api/auth/session",
                    headers={"Authorization": f"Bearer {token}", "Connection": "close"},
                )
                assert r.status_code == 200, r.text
    after = _pod_metrics(cp, ns)
    hits = sum(
        _sample_sum(t, "phoenix_cache_requests_total", layer="l2", result="hit") for t in after.values()
    )
    rejected = sum(_sample_sum(t, "phoenix_cache_l2_rejected_total") for t in after.values())
    print(f"\n[pods] L2 hits across {len(after)} pods: {before:.0f} -> {hits:.0f}; rejected {rejected:.0f}")
    assert hits > before
    assert rejected == 0


def test_managed_redis_lets_only_the_acl_user_in_and_only_to_phoenix_keys(stack: dict[str, Any]) -> None:
    """Finding 3 (operator part): the managed Redis's default user is off and the auth pods' user
    `phoenix-auth` may touch `phoenix:*` with the service's commands only (it does: the L2 entries
    of the test above are there)."""
    cp, ns = stack["cp"], stack["ns"]
    pod = ready_pods(cp, ns, f"app.kubernetes.io/instance={NAME},app.kubernetes.io/component=redis")[0]

    def cli(*args: str, user: bool = True) -> str:
        # The password stays in the pod: REDIS_PASSWORD (from the Secret) → REDISCLI_AUTH.
        auth = 'REDISCLI_AUTH="$REDIS_PASSWORD" ' if user else ""
        command = (
            auth + "redis-cli --no-auth-warning " + ("--user phoenix-auth " if user else "") + " ".join(args)
        )
        out = cp.kubectl("exec", "-n", ns, pod["metadata"]["name"], "--", "sh", "-c", command)
        return out.stdout + out.stderr

    assert "NOAUTH" in cli("GET", "phoenix:x", user=False)
    keys = cli("--scan", "--pattern", "'phoenix:c:*'").split()
    assert keys, "no L2 entries in Redis"
    for refused in ("FLUSHALL", "CONFIG GET maxmemory", "GET other:key", "KEYS '*'", "EVAL 'return 1' 0"):
        assert "NOPERM" in cli(refused), refused


def test_auth_pod_logs_show_the_summary_line(stack: dict[str, Any]) -> None:
    cp, ns = stack["cp"], stack["ns"]
    pod = ready_pods(cp, ns, AUTH_SELECTOR)[0]["metadata"]["name"]
    wait_until(
        lambda: "phoenix summary" in cp.kubectl("logs", "-n", ns, pod).stdout,
        SUMMARY_INTERVAL * 5,
        "the summary line in the auth pod's log",
    )


def _sessions(base: str, n: int) -> list[str]:
    with httpx.Client() as client:
        return [login(client, base).json()["session"]["sessionId"] for _ in range(n)]


def test_auth_pod_deleted_under_load_loses_no_session(
    stack: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    cp, ns, base = stack["cp"], stack["ns"], stack["base"]
    victim = ready_pods(cp, ns, AUTH_SELECTOR)[0]["metadata"]["name"]
    with Traffic(base, _sessions(base, 6)) as traffic:
        time.sleep(3)
        cp.kubectl("delete", "pod", "-n", ns, victim, "--wait=false")
        wait_until(
            lambda: len(ready_pods(cp, ns, AUTH_SELECTOR)) >= 2 and not _exists_pod(cp, ns, victim),
            120,
            "a replacement pod Ready",
        )
        time.sleep(3)
    with capsys.disabled():
        print(f"\n[pods] auth pod deleted under load: {traffic.report()}")
    assert traffic.checks > 50 and traffic.logins > 5, traffic.report()
    assert traffic.unabsorbed == [], traffic.report()
    assert traffic.lost_sessions() == []


def _exists_pod(cp: ControlPlane, ns: str, name: str) -> bool:
    return cp.exists("pod", name, ns)


def test_spec_change_rolls_the_deployment_under_load_without_a_failed_request(
    stack: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    cp, ns, base = stack["cp"], stack["ns"], stack["base"]
    before = {p["metadata"]["name"] for p in ready_pods(cp, ns, AUTH_SELECTOR)}
    env = [
        {"name": "PHOENIX_SUMMARY_INTERVAL", "value": str(SUMMARY_INTERVAL)},
        {"name": "PHOENIX_LOG_LEVEL", "value": "WARNING"},
    ]
    with Traffic(base, _sessions(base, 6)) as traffic:
        time.sleep(2)
        cp.apply(_pxa(extra_env=env), namespace=ns)
        wait_until(
            lambda: not before & {p["metadata"]["name"] for p in json_pods(cp, ns, AUTH_SELECTOR)},
            180,
            "every old auth pod replaced",
        )
        wait_rollout(cp, ns, NAME)
        time.sleep(2)
    with capsys.disabled():
        print(f"\n[pods] rolling update under load: {traffic.report()}")
    assert traffic.checks > 50 and traffic.logins > 5, traffic.report()
    assert traffic.failures == [], traffic.report()
    assert traffic.lost_sessions() == []


def test_operator_pod_killed_is_rescheduled_and_converges(stack: dict[str, Any]) -> None:
    cp, ns = stack["cp"], stack["ns"]
    old = ready_pods(cp, OPERATOR_NS, OPERATOR_SELECTOR)[0]["metadata"]["name"]
    cp.kubectl("delete", "pod", "-n", OPERATOR_NS, old, "--grace-period=0", "--force", "--wait=false")
    wait_until(
        lambda: [p for p in ready_pods(cp, OPERATOR_NS, OPERATOR_SELECTOR) if p["metadata"]["name"] != old],
        120,
        "a new operator pod Ready",
    )
    # A change made after the kill is reconciled by the new pod.
    cp.apply(_pxa(replicas=3), namespace=ns)
    wait_ready_pxa(cp, ns, NAME, timeout=180)
    deploy = cp.get("deployment", NAME, ns)
    assert deploy["spec"]["replicas"] == 3
    wait_until(lambda: len(ready_pods(cp, ns, AUTH_SELECTOR)) == 3, 120, "3 auth pods Ready")


def test_database_password_rotation_rolls_the_pods_and_the_new_password_works(stack: dict[str, Any]) -> None:
    cp, ns, base, db = stack["cp"], stack["ns"], stack["base"], stack["db"]
    before = {p["metadata"]["name"] for p in ready_pods(cp, ns, AUTH_SELECTOR)}
    new_password = f"rotated{int(time.time())}"
    db.admin(f"ALTER ROLE {db.role} PASSWORD '{new_password}'")
    cp.apply(_secret(db, password=new_password), namespace=ns)
    wait_until(
        lambda: not before & {p["metadata"]["name"] for p in json_pods(cp, ns, AUTH_SELECTOR)},
        180,
        "the auth pods rolled after the Secret changed",
    )
    wait_rollout(cp, ns, NAME)
    # Only the new password exists now: a fresh pod's pool can only have connected with it.
    with httpx.Client() as client:
        response = login(client, base)
    assert response.status_code == 200, response.text
    pod = ready_pods(cp, ns, AUTH_SELECTOR)[0]["metadata"]["name"]
    env = cp.kubectl(
        "get", "pod", pod, "-n", ns, "-o", "jsonpath={.spec.containers[0].env[0].valueFrom}"
    ).stdout
    assert "secretKeyRef" in env  # the password reaches the pod by reference, never as a literal
