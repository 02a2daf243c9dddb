"""Medians over runs and the markdown tables the benchmark publishes."""

import pytest

from phoenix_bench.report import fmt_ms, fmt_pct, markdown_table, median_tree
from phoenix_bench.runner import cache_delta, perfect_cache_ratio
from phoenix_bench.tables import limits, nearest_point, render_all


def test_median_tree_takes_medians_leaf_by_leaf():
    runs = [
        {"v": 1.0, "s": [{"p50": 1}, {"p50": 10}], "name": "x", "none": None},
        {"v": 5.0, "s": [{"p50": 3}, {"p50": 30}], "name": "x", "none": None},
        {"v": 2.0, "s": [{"p50": 2}], "name": "x", "none": None},
    ]
    assert median_tree(runs) == {"v": 2.0, "s": [{"p50": 2}, {"p50": 20.0}], "name": "x", "none": None}


def test_markdown_table_aligns_and_checks_width():
    text = markdown_table(["Metric", "Value"], [["p50", "1.00 ms"], ["p99 long name", "2 ms"]])
    lines = text.splitlines()
    assert lines[0] == "| Metric        |   Value |"
    assert lines[1] == "|:--------------|--------:|"
    assert lines[3] == "| p99 long name |    2 ms |"
    with pytest.raises(ValueError):
        markdown_table(["a", "b"], [["only one"]])


def test_formatting():
    assert fmt_ms(0.1234) == "0.12 ms"
    assert fmt_ms(45.67) == "45.7 ms"
    assert fmt_ms(None) == "n/a"
    assert fmt_pct(0.985) == "98.5 %"


def test_cache_delta_and_never_evicting_bound():
    before = {"l1_hit": 10, "l1_miss": 10, "l2_hit": 0, "l2_miss": 10}
    after = {"l1_hit": 100, "l1_miss": 20, "l2_hit": 5, "l2_miss": 15}
    d = cache_delta(before, after)
    assert d["lookups"] == 100 and d["hit_ratio"] == pytest.approx(0.95)
    assert cache_delta(None, after) is None
    assert perfect_cache_ratio(["a"], ["a", "b", "b", "c"]) == 0.5
    assert perfect_cache_ratio([], []) is None


def _results(login_tput, p50, session_p99):
    sweep_login = [
        {
            "offered_rate": 2.5,
            "fraction_of_capacity": 0.05,
            "latency": {"p50_ms": p50, "p95_ms": p50, "p99_ms": p50},
        },
        {
            "offered_rate": 25.0,
            "fraction_of_capacity": 0.5,
            "latency": {"p50_ms": 40, "p95_ms": 50, "p99_ms": 60},
        },
    ]
    sweep_session = [
        {
            "offered_rate": 1000,
            "unfinished": 0,
            "latency": {"p50_ms": 0.5, "p95_ms": 1, "p99_ms": session_p99},
        }
    ]
    app = {
        "login_sweep": sweep_login,
        "session_sweep": sweep_session,
        "login_throughput": login_tput,
        "session_closed": {"ok_per_s": 800},
        "noop_closed": {"ok_per_s": 1000},
        "login_cache": {"hit_ratio": 0.99},
        "login_cache_perfect": 0.995,
        "session_cache": {"hit_ratio": 1.0},
    }
    median = {
        "verify_ms": 40.0,
        "hash_capacity_per_s": 50.0,
        "db": {
            "select_1": {"p50_ms": 0.05, "p99_ms": 0.1},
            "phoenix_lookup": {"p50_ms": 0.08, "p95_ms": 0.1, "p99_ms": 0.2},
        },
        "apps": {"phoenix": app, "naive": app},
    }
    return {
        "machine": {"date_utc": "2026-11-26T14:30:00Z", "nproc": 2, "cpu_model": "cpu"},
        "config": {
            "table_login_fraction": 0.5,
            "table_session_rate": 1000,
            "zipf_s": 1.1,
            "users": 1000,
            "workers": 2,
            "login_fractions": [0.05, 0.5],
        },
        "load_generator": "own",
        "runs": [median],
        "median": median,
    }


def test_limits_report_met_and_missed_targets_honestly():
    good = {r["name"].split(" (")[0]: r["met"] for r in limits(_results(46.0, 42.0, 1.5))}
    assert all(good.values()), good
    bad = limits(_results(30.0, 50.0, 3.0))
    missed = [r["name"] for r in bad if r["met"] is False]
    assert any("Login throughput" in n for n in missed)
    assert any("Login p50" in n for n in missed)
    assert any("p99 at" in n for n in missed)
    text = render_all(_results(30.0, 50.0, 3.0))
    assert "**missed**" in text and "Table 1" in text and "150-300 ms" in text


def test_nearest_point():
    sweep = [{"offered_rate": 100}, {"offered_rate": 1000}, None]
    assert nearest_point(sweep, "offered_rate", 900) == {"offered_rate": 1000}
    assert nearest_point([], "offered_rate", 1) is None


def test_server_timing_parsing():
    from phoenix_bench.runner import server_timing_ms

    header = 'db;dur=0.42, verify;dur=31.20, cache;desc="hits=1", total;dur=33.00'
    assert server_timing_ms(header, "verify") == 31.2
    assert server_timing_ms(header, "db") == 0.42
    assert server_timing_ms(header, "cache") is None
    assert server_timing_ms(None, "verify") is None


def test_served_from_cache_share_counts_logins_not_lookups():
    from phoenix_bench.loadgen import Sample
    from phoenix_bench.runner import served_from_cache_share

    def s(body):
        return Sample(0, 0, 1, 200, body)

    samples = [s(b'{"performance":{"cacheHits":2}}'), s(b'{"performance":{"cacheHits":0}}'), s(b"not json")]
    assert served_from_cache_share(samples) == 0.5
    assert served_from_cache_share([]) is None


def test_saturation_stops_the_sweep_and_table1_uses_a_load_both_sustain():
    from phoenix_bench.runner import saturated, skipped_point
    from phoenix_bench.tables import common_point, table_sweep

    ok = {"offered_rate": 50, "achieved_rate": 50, "unfinished": 0, "latency": {"p50_ms": 5}}
    behind = {"offered_rate": 100, "achieved_rate": 80, "unfinished": 0, "latency": {"p50_ms": 200}}
    queued = {"offered_rate": 100, "achieved_rate": 100, "unfinished": 3, "latency": {"p50_ms": 5}}
    assert not saturated(ok)
    assert saturated(behind) and saturated(queued) and saturated(skipped_point(250))

    fast = [ok, dict(ok, offered_rate=100, achieved_rate=100), dict(ok, offered_rate=250, achieved_rate=250)]
    slow = [ok, behind, skipped_point(250)]
    apps = {"naive": {"session_sweep": slow}, "phoenix": {"session_sweep": fast}}
    chosen = common_point(apps, "session", 250)
    assert chosen["naive"]["offered_rate"] == 50 and chosen["phoenix"]["offered_rate"] == 50
    text = table_sweep({"median": {"apps": apps}}, "session")
    assert "not run: saturated at a lower rate" in text


def test_cache_delta_prefers_logical_lookups():
    before = {"l1_hit": 0, "l1_miss": 0, "lookup_hit": 10, "lookup_miss": 10}
    after = {"l1_hit": 500, "l1_miss": 500, "lookup_hit": 108, "lookup_miss": 12}
    d = cache_delta(before, after)
    assert d["lookups"] == 100 and d["hit_ratio"] == pytest.approx(0.98)


def test_published_config_has_no_database_password():
    from phoenix_bench.runner import redact_url

    assert (
        redact_url("postgresql://phoenix:s3cr@t@127.0.0.1:5432/x")
        == "postgresql://phoenix:***@127.0.0.1:5432/x"
    )
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"
