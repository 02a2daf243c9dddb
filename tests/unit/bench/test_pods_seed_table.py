"""The seed-table-in-pods benchmark reports what the pod path adds, per row, from its medians."""

from phoenix_bench.pods_seed_table import table


def test_table_subtracts_loopback_from_pod() -> None:
    lo = {
        "login_p50": 23.0,
        "login_p99": 29.0,
        "verify_p50": 20.0,
        "db_p50": 2.0,
        "session_p50": 0.3,
        "session_p99": 1.4,
    }
    pod = {
        "login_p50": 24.5,
        "login_p99": 31.0,
        "verify_p50": 20.0,
        "db_p50": 2.5,
        "session_p50": 0.4,
        "session_p99": 1.4,
    }
    out = table({"loopback": lo, "pod": pod})
    assert "| Auth API (login) p50 / p99, ms | 25-45 | 23.0 / 29.0 | 24.5 / 31.0 | +1.5 / +2.0 |" in out
    assert "| 10-20 | 0.3 / 1.4 | 0.4 / 1.4 | +0.1 / +0.0 |" in out
