"""Operator faults and secrets on the real control plane (issue 6; H6's part of it).

- The API server is killed (SIGKILL, like a crash) and started again: the operator process does not
  die, reconnects by itself and resumes watching (a new PhoenixAuth becomes Ready, a deleted child
  is restored).
- Planted secret values (a unique database password inside DATABASE_URL, the generated managed
  Redis password, the generated admin token and L2 signing key) never appear in the PhoenixAuth's
  status, in any event of the namespace, in `kubectl describe`, in the operator's logs or in its
  /metrics.

Uses the e2e fixtures of tests/e2e/conftest.py (a private control plane, the chart installed, the
operator as a local process with the chart's ServiceAccount).
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import time
from typing import Any

import pytest
from e2e_kube import SCRIPTS, ControlPlane, OperatorProcess, wait_until

READY_TIMEOUT = 120


def _secret_and_pxa(name: str, database_url: str) -> str:
    return f"""
apiVersion: v1
kind: Secret
metadata:
  name: {name}-db
type: Opaque
stringData:
  DATABASE_URL: {database_url}
---
apiVersion: auth.phoenix.dev/v1alpha1
kind: PhoenixAuth
metadata:
  name: {name}
spec:
  database:
    secretRef:
      name: {name}-db
    connectionBudget: 50
"""


def _ready(cp: ControlPlane, ns: str, name: str) -> dict[str, Any] | None:
    obj = cp.get("pxa", name, ns)
    cond = cp.condition(obj, "Ready") or {}
    if (
        cond.get("status") == "True"
        and obj.get("status", {}).get("observedGeneration") == obj["metadata"]["generation"]
    ):
        return obj
    return None


def _wait_ready(cp: ControlPlane, ns: str, name: str, op: OperatorProcess) -> dict[str, Any]:
    try:
        return wait_until(lambda: _ready(cp, ns, name), READY_TIMEOUT, f"PhoenixAuth {ns}/{name} Ready")
    except AssertionError:
        print(cp.kubectl("describe", "pxa", name, "-n", ns, check=False).stdout)
        print(op.logs()[-5000:])
        raise


def _api_ready(cp: ControlPlane) -> bool:
    return cp.kubectl("get", "--raw", "/readyz", check=False, timeout=10).returncode == 0


def test_api_server_restart_operator_reconnects_and_resumes_watching(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp, ns, op = control_plane, namespace, operator
    wait_until(op.healthy, 60, "the operator's liveness endpoint")
    cp.apply(_secret_and_pxa("before", "postgresql://phoenix:phoenix@db.example.svc:5432/phoenix"), ns)
    _wait_ready(cp, ns, "before", op)

    pid = int((cp.state / "pids" / "kube-apiserver.pid").read_text().strip())
    os.killpg(pid, signal.SIGKILL)
    wait_until(lambda: not _api_ready(cp), 30, "the API server to be gone")
    time.sleep(5)  # the operator's watches fail and retry meanwhile
    assert op.alive(), "the operator died while the API server was down:\n" + op.logs()[-3000:]
    up = subprocess.run(
        ["bash", str(SCRIPTS / "control-plane.sh"), "up"],
        env=cp.script_env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert up.returncode == 0, up.stderr[-3000:]
    wait_until(lambda: _api_ready(cp), 60, "the API server to be back")

    # Watching resumed: a PhoenixAuth created after the restart is reconciled to Ready...
    cp.apply(_secret_and_pxa("after", "postgresql://phoenix:phoenix@db.example.svc:5432/phoenix"), ns)
    _wait_ready(cp, ns, "after", op)
    # ...and drift on the one from before the restart is repaired.
    cp.kubectl("delete", "configmap", "before-config", "-n", ns)
    wait_until(lambda: cp.exists("configmap", "before-config", ns), 60, "before-config restored")
    assert op.alive() and op.healthy()


def test_planted_secrets_never_in_status_events_describe_or_operator_logs(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp, ns, op = control_plane, namespace, operator
    wait_until(op.healthy, 60, "the operator's liveness endpoint")
    db_password = "planted-db-" + secrets.token_hex(12)
    cp.apply(_secret_and_pxa("leak", f"postgresql://app:{db_password}@db.example.svc:5432/app"), ns)
    obj = _wait_ready(cp, ns, "leak", op)
    # Change the referenced Secret (the operator reads it again and rolls the pods) with another
    # planted value, so the rotation path is covered too.
    rotated = "planted-rot-" + secrets.token_hex(12)
    cp.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "leak-db"},
            "type": "Opaque",
            "stringData": {"DATABASE_URL": f"postgresql://app:{rotated}@db.example.svc:5432/app"},
        },
        ns,
    )
    wait_until(
        lambda: (
            cp.get("pxa", "leak", ns)["metadata"]["generation"] == obj["metadata"]["generation"]
            and _ready(cp, ns, "leak")
        ),
        READY_TIMEOUT,
        "Ready after the Secret rotation",
    )
    time.sleep(3)  # let events and logs of the rotation land
    planted = {"database password": db_password, "rotated database password": rotated}
    redis_auth = [
        s for s in cp.get("secret", namespace=ns)["items"] if s["metadata"]["name"].endswith("redis-auth")
    ]
    assert redis_auth, "no managed Redis Secret was created"
    for key, value in (redis_auth[0].get("data") or {}).items():
        planted[f"managed redis {key}"] = base64.b64decode(value).decode()
    keys = cp.get("secret", "leak-phoenix-keys", ns)  # the generated admin token and L2 signing key
    for key, value in (keys.get("data") or {}).items():
        planted[f"generated {key}"] = base64.b64decode(value).decode()
    assert {"generated PHOENIX_ADMIN_TOKEN", "generated PHOENIX_CACHE_SIGNING_KEY"} <= planted.keys()
    assert all(len(v) >= 8 for v in planted.values()), planted.keys()

    places = {
        "PhoenixAuth (status included)": cp.kubectl("get", "pxa", "leak", "-n", ns, "-o", "json").stdout,
        "events": cp.kubectl("get", "events", "-n", ns, "-o", "json").stdout,
        "describe": cp.kubectl("describe", "pxa", "leak", "-n", ns).stdout,
        "operator logs": op.logs(),
        "operator metrics": op.metrics(),
    }
    assert "leak" in places["operator logs"] or "leak" in places["events"]  # we looked at the right things
    leaks = [(what, where) for what, v in planted.items() for where, text in places.items() if v in text]
    assert not leaks, leaks


@pytest.fixture(autouse=True)
def _api_server_up_after_each_test(control_plane: ControlPlane):
    """If a test failed with the API server down, bring it back for the tests after it."""
    yield
    if not _api_ready(control_plane):
        subprocess.run(
            ["bash", str(SCRIPTS / "control-plane.sh"), "up"],
            env=control_plane.script_env,
            capture_output=True,
            timeout=240,
            check=False,
        )
