"""The local control plane itself behaves like a cluster for what the operator needs: the scheduler
places pods on the kwok node, kwok makes them Ready, Jobs complete, the garbage collector removes
owned objects, and `scripts/control-plane.sh up` is idempotent."""

from __future__ import annotations

import subprocess

from e2e_kube import REPO, ControlPlane, wait_until

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
