"""Table 3's harness on the real control plane: N PhoenixAuths created at once all turn Ready,
and the benchmark reads the operator's reconcile counter and peak RSS (small N: a check of the
harness, not the published numbers; those come from `scripts/bench-operator`)."""

from __future__ import annotations

from e2e_kube import ControlPlane

from phoenix_bench.operator_scale import render, run_all


def test_operator_scale_harness_measures_ready_time_reconciles_and_rss(control_plane: ControlPlane) -> None:
    lines: list[str] = []
    [result] = run_all(control_plane.env, [3], timeout=90, log=lines.append)
    assert result.ready == 3, lines
    assert result.seconds_to_all_ready is not None and 0 < result.seconds_to_all_ready < 90
    assert result.reconciles is not None and result.reconciles >= 3
    assert result.peak_rss_mb is not None and result.peak_rss_mb > 10
    assert "3/3" in render([result])
