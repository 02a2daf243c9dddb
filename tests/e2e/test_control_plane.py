"""The local control plane itself behaves like a cluster for what the operator needs: the scheduler
places pods on the kwok node, kwok makes them Ready, Jobs complete, the garbage collector removes
owned objects, and `scripts/control-plane.sh up` is idempotent."""

from __future__ import annotations

import subprocess
from pathlib import Path

from e2e_kube import REPO, ControlPlane, free_ports, wait_until

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: registry.invalid/web:1}]
"""

JOB = """
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers: [{name: once, image: registry.invalid/once:1}]
"""


def test_deployment_becomes_ready_and_is_garbage_collected(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.apply(DEPLOYMENT, namespace=namespace)
    wait_until(
        lambda: control_plane.get("deployment", "web", namespace).get("status", {}).get("readyReplicas") == 3,
        60,
        "3/3 ready replicas (kwok)",
    )
    control_plane.kubectl("delete", "deployment", "web", "-n", namespace)
    wait_until(
        lambda: not control_plane.get("pods", namespace=namespace)["items"],
        60,
        "the garbage collector to delete the ReplicaSet's pods",
    )


def test_job_completes(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.apply(JOB, namespace=namespace)
    wait_until(
        lambda: (
            (control_plane.condition(control_plane.get("job", "once", namespace), "Complete") or {}).get(
                "status"
            )
            == "True"
        ),
        60,
        "the Job to complete (kwok)",
    )


def test_up_is_idempotent(control_plane: ControlPlane) -> None:
    result = subprocess.run(
        ["bash", "scripts/control-plane.sh", "up"],
        capture_output=True,
        text=True,
        env=control_plane.script_env,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert "already up" in result.stderr
    version = control_plane.kubectl("version", "-o", "json").stdout
    assert '"gitVersion": "v1.36.3"' in version


def test_up_refuses_a_busy_port_naming_the_variable(control_plane: ControlPlane, tmp_path: Path) -> None:
    """Nothing is started when a port is taken (here: by the session's own API server)."""
    etcd, peer, kcm, sched, kwok = free_ports(5)
    env = {
        **control_plane.script_env,
        "PHOENIX_CP_STATE": str(tmp_path / "cp"),
        "PHOENIX_CP_APISERVER_PORT": control_plane.script_env.get("PHOENIX_CP_APISERVER_PORT", "6443"),
        "PHOENIX_CP_ETCD_PORT": str(etcd),
        "PHOENIX_CP_ETCD_PEER_PORT": str(peer),
        "PHOENIX_CP_KCM_PORT": str(kcm),
        "PHOENIX_CP_SCHEDULER_PORT": str(sched),
        "PHOENIX_CP_KWOK_PORT": str(kwok),
    }
    result = subprocess.run(
        ["bash", "scripts/control-plane.sh", "up"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 1
    assert "set PHOENIX_CP_APISERVER_PORT to a free port" in result.stderr
    assert not list((tmp_path / "cp" / "pids").glob("*.pid")), "a component was started anyway"
