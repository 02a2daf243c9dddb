"""Table 3's harness on the real control plane: N PhoenixAuths created at once all turn Ready,
and the benchmark reads the operator's reconcile counter and peak RSS (small N: a check of the
harness, not the published numbers; those come from `scripts/bench-operator`)."""

from __future__ import annotations

from e2e_kube import ControlPlane

from phoenix_bench.operator_scale import (
    CRD_DIR,
    GROUP_PLURAL,
    Kubectl,
    clear_leftovers,
    phoenix_auth_manifest,
    render,
    run_all,
)


def test_operator_scale_harness_measures_ready_time_reconciles_and_rss(control_plane: ControlPlane) -> None:
    lines: list[str] = []
    [result] = run_all(control_plane.env, [3], timeout=90, log=lines.append)
    assert result.ready == 3, lines
    assert result.seconds_to_all_ready is not None and 0 < result.seconds_to_all_ready < 90
    assert result.reconciles is not None and result.reconciles >= 3
    assert result.peak_rss_mb is not None and result.peak_rss_mb > 10
    assert "3/3" in render([result])


def test_a_namespace_an_interrupted_run_left_is_deleted_before_measuring(control_plane: ControlPlane) -> None:
    """A run stopped mid-way leaves its PhoenixAuths with the operator's finalizer and no operator:
    the next run must not measure beside them (their autoscalers keep the control plane busy)."""
    if not control_plane.exists("crd", GROUP_PLURAL):
        control_plane.kubectl("apply", "-f", str(CRD_DIR / f"{GROUP_PLURAL}.yaml"))
        control_plane.kubectl("wait", "--for=condition=Established", f"crd/{GROUP_PLURAL}", "--timeout=60s")
    namespace = "bench-op-2-left0v"
    control_plane.kubectl("create", "namespace", namespace)
    stuck = phoenix_auth_manifest("pxa-0", namespace, "phoenix-db")
    stuck["metadata"]["finalizers"] = ["auth.phoenix.dev/kopf-finalizer"]
    control_plane.apply(stuck)
    control_plane.kubectl("create", "namespace", "not-a-bench")
    lines: list[str] = []
    clear_leftovers(
        Kubectl(control_plane.env["KUBECONFIG"], str(control_plane.bin_dir / "kubectl")), lines.append
    )
    assert not control_plane.exists("namespace", namespace), lines
    assert control_plane.exists("namespace", "not-a-bench")
    assert lines == [f"deleting {namespace}, left by an interrupted run"]
    control_plane.kubectl("delete", "namespace", "not-a-bench", "--wait=false")
