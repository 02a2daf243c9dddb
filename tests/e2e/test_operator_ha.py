"""Operator processes that crash or run twice: Kopf peering keeps exactly one replica acting, a
graceful exit hands over to the standby, and an operator killed mid-reconcile converges after a
restart without duplicating work (one migration Job).

Priorities are explicit: every local process has the same hostname, and Kopf freezes all peers
that share the highest priority (in a cluster each pod's name gives it its own priority).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from e2e_kube import MANIFESTS, ControlPlane, OperatorProcess, wait_until

READY_TIMEOUT = 90


def ready(cp: ControlPlane, ns: str, name: str) -> bool:
    obj = cp.get("pxa", name, ns)
    cond = cp.condition(obj, "Ready") or {}
    return (
        cond.get("status") == "True"
        and obj.get("status", {}).get("observedGeneration") == obj["metadata"]["generation"]
    )


def settled_count(op: OperatorProcess, quiet: float = 3.0, timeout: float = 60.0) -> float:
    """The process's reconcile count once it has not changed for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last, since = op.reconciles(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = op.reconciles()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
    raise AssertionError(f"the reconcile count of {op} never settled")


def test_two_replicas_do_not_fight_and_the_standby_takes_over(
    control_plane: ControlPlane, operator_factory: Callable[..., OperatorProcess], namespace: str
) -> None:
    cp, ns = control_plane, namespace
    # The standby runs alone first (as after a rollout), then a higher-priority replica joins.
    standby = operator_factory("standby", "--priority=100")
    wait_until(standby.healthy, 60, "the standby up")
    time.sleep(3)  # let its initial listings finish while it is alone
    active = operator_factory("active", "--priority=200")
    wait_until(active.healthy, 60, "the active replica up")
    wait_until(
        lambda: "Pausing operations in favour of" in standby.logs(), 30, "the lower-priority replica to pause"
    )
    # Pausing stops the watch streams; work the standby had already queued (the resume of
    # PhoenixAuths left by earlier tests in this shared control plane) still finishes. Take the
    # baseline once its count has stopped moving.
    standby_before = settled_count(standby)
    active_before = active.reconciles()
    # Both replicas are visible in the peering object the chart created.
    peers = cp.get("clusterkopfpeering", "phoenix-operator").get("status") or {}
    assert {100, 200} <= {p.get("priority") for p in peers.values() if isinstance(p, dict)}

    cp.kubectl("apply", "-n", ns, "-f", str(MANIFESTS / "samples" / "minimal.yaml"))
    wait_until(lambda: ready(cp, ns, "phoenix"), READY_TIMEOUT, "Ready with two replicas running")
    assert active.reconciles() > active_before
    assert standby.reconciles() == standby_before, "the paused replica reconciled too"

    # No flapping: once Ready, the children stay put (two writers would keep bumping them).
    deploy_rv = cp.get("deployment", "phoenix", ns)["metadata"]["resourceVersion"]
    cm_rv = cp.get("configmap", "phoenix-config", ns)["metadata"]["resourceVersion"]
    time.sleep(8)
    assert cp.get("deployment", "phoenix", ns)["metadata"]["resourceVersion"] == deploy_rv
    assert cp.get("configmap", "phoenix-config", ns)["metadata"]["resourceVersion"] == cm_rv
    assert len(cp.get("jobs", namespace=ns)["items"]) == 1

    # The active replica leaves gracefully (its peering record goes with it): the standby resumes
    # and repairs drift.
    active.stop()
    old_uid = cp.get("service", "phoenix", ns)["metadata"]["uid"]
    cp.kubectl("delete", "service", "phoenix", "-n", ns)
    wait_until(
        lambda: (
            cp.exists("service", "phoenix", ns)
            and cp.get("service", "phoenix", ns)["metadata"]["uid"] != old_uid
        ),
        60,
        "the standby to take over and re-create the Service",
    )
    assert standby.reconciles() > standby_before


def test_operator_killed_mid_reconcile_converges_after_restart(
    control_plane: ControlPlane, operator_factory: Callable[..., OperatorProcess], namespace: str
) -> None:
    cp, ns = control_plane, namespace
    first = operator_factory("first", "--priority=300")
    wait_until(first.healthy, 60, "the first operator up")
    cp.kubectl("apply", "-n", ns, "-f", str(MANIFESTS / "samples" / "minimal.yaml"))
    # Kill (SIGKILL, no cleanup) as soon as the reconcile has started writing children.
    wait_until(
        lambda: cp.exists("configmap", "phoenix-config", ns), 60, "the reconcile to start", interval=0.05
    )
    first.kill()
    # While no operator runs, children disappear (a careless admin, a node drain...).
    cp.kubectl("delete", "service", "phoenix", "-n", ns, "--ignore-not-found")
    cp.kubectl("delete", "secret", "phoenix-redis-auth", "-n", ns, "--ignore-not-found")

    # The dead replica's peering record lingers until it expires; a restarted pod gets a new name
    # and so its own priority; here: a higher one.
    second = operator_factory("second", "--priority=400")
    wait_until(lambda: ready(cp, ns, "phoenix"), READY_TIMEOUT, "Ready after the restart")
    for kind, name in (
        ("deployment", "phoenix"),
        ("service", "phoenix"),
        ("deployment", "phoenix-redis"),
        ("secret", "phoenix-redis-auth"),
        ("horizontalpodautoscaler", "phoenix"),
        ("poddisruptionbudget", "phoenix"),
    ):
        assert cp.exists(kind, name, ns), f"{kind}/{name} missing after the restart"
    assert len(cp.get("jobs", namespace=ns)["items"]) == 1, "the restart ran the migration twice"
    assert second.reconciles() > 0
