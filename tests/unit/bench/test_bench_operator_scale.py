"""The operator benchmark's pure parts: counting Ready objects, reconciles, the table's verdicts."""

import os

from phoenix_bench.operator_scale import (
    ScaleResult,
    count_ready,
    median_results,
    parse_api_requests,
    parse_reconciles,
    peak_rss_mb,
    phoenix_auth_manifest,
    render,
)


def test_count_ready_needs_a_true_ready_condition():
    items = [
        {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
        {
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "False"},
                    {"type": "Progressing", "status": "True"},
                ]
            }
        },
        {"status": {}},
        {},
    ]
    assert count_ready(items) == 1


def test_parse_reconciles_sums_all_results():
    text = (
        "# HELP phoenix_operator_reconciles_total x\n"
        'phoenix_operator_reconciles_total{result="success"} 180.0\n'
        'phoenix_operator_reconciles_total{result="transient_error"} 3.0\n'
        'phoenix_operator_reconciles_created{result="success"} 1.7e9\n'
    )
    assert parse_reconciles(text) == 183.0


def test_peak_rss_of_this_process_is_positive():
    assert peak_rss_mb(os.getpid()) > 1.0
    assert peak_rss_mb(2**22 + 12345) is None


def test_manifest_is_the_minimal_sample():
    m = phoenix_auth_manifest("pxa-1", "ns", "phoenix-db")
    assert m["kind"] == "PhoenixAuth" and m["spec"]["database"]["secretRef"]["name"] == "phoenix-db"


def test_render_marks_timeouts_and_targets():
    text = render(
        [
            ScaleResult(200, 150, None, 900.0, 7.5, 180.0, True),
            ScaleResult(50, 50, 12.0, 120.0, 10.0, 90.0, False),
        ]
    )
    assert "not all Ready (timeout)" in text
    assert "**missed** (<= 60 s)" in text
    assert "**missed** (<= 150 MB)" in text
    assert "met (<= 150 MB)" in text


def test_parse_api_requests_sums_every_verb_and_kind():
    text = (
        'phoenix_operator_api_requests_total{kind="Deployment",verb="apply"} 400.0\n'
        'phoenix_operator_api_requests_total{kind="PhoenixAuth/status",verb="patch"} 950.0\n'
        'phoenix_operator_api_requests_created{kind="Deployment",verb="apply"} 1.7e9\n'
    )
    assert parse_api_requests(text) == 1350.0


def test_render_shows_first_pass_and_requests_per_reconcile():
    text = render([ScaleResult(200, 200, 51.4, 1800.0, 35.0, 149.0, False, 46.3, 5400.0)])
    assert "46.3 s" in text and " 3.0 |" in text and "met (<= 60 s)" in text


def test_median_results_takes_each_column_median_and_counts_a_timeout_as_worst():
    def r(ready: int, secs: float | None, rss: float) -> ScaleResult:
        return ScaleResult(200, ready, secs, 1000.0, 20.0, rss, secs is None, 40.0, 4000.0)

    med = median_results([[r(200, 50.0, 140.0)], [r(150, None, 170.0)], [r(200, 55.0, 150.0)]])
    assert len(med) == 1
    assert med[0].seconds_to_all_ready == 55.0 and not med[0].timed_out
    assert med[0].peak_rss_mb == 150.0 and med[0].ready == 200
    worse = median_results([[r(120, None, 140.0)], [r(150, None, 170.0)], [r(200, 55.0, 150.0)]])
    assert worse[0].seconds_to_all_ready is None and worse[0].timed_out and worse[0].ready == 150


def test_render_shows_the_cpu_of_the_control_plane_and_the_operator():
    result = ScaleResult(200, 200, 51.4, 400.0, 7.8, 88.0, False, 50.9, 2800.0, 33.0, 14.2)
    result.control_plane_cpu_s = {"etcd": 10.0, "kube-apiserver": 60.4, "kwok": 5.0}
    assert " 75 / 14 s |" in render([result])


def test_median_results_takes_the_median_cpu_per_process():
    runs = [
        [ScaleResult(200, 200, s, 400.0, 7.8, 88.0, False, operator_cpu_s=c, control_plane_cpu_s=cp)]
        for s, c, cp in (
            (50.0, 12.0, {"etcd": 9.0, "kwok": 4.0}),
            (60.0, 16.0, {"etcd": 11.0, "kwok": 6.0}),
            (55.0, 14.0, {"etcd": 10.0, "kwok": 5.0}),
        )
    ]
    [median] = median_results(runs)
    assert median.operator_cpu_s == 14.0 and median.control_plane_cpu_s == {"etcd": 10.0, "kwok": 5.0}
