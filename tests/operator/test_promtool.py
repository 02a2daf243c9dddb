"""The generated rule groups pass `promtool check rules`, and each alert fires above its threshold
and stays silent below it on synthetic series (`promtool test rules`).

The series use the auth service's metric names and the labels a ServiceMonitor scrape adds
(namespace, job = Service name), so the test breaks if either side renames something.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from phoenix_operator.builders.common import Owner
from phoenix_operator.builders.prometheus_rule import rule_groups
from phoenix_operator.spec import parse_spec

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
OWNER = Owner(name="auth", namespace="demo", uid="u")
SEL = 'namespace="demo",job="auth"'
RULE_LABELS = {"namespace": "demo", "phoenixauth": "auth"}

pytestmark = pytest.mark.skipif(
    not Path(PROMTOOL).exists(), reason="promtool missing: apt-get install prometheus"
)


def spec(**parts: Any):
    raw: dict[str, Any] = {"database": {"secretRef": {"name": "db"}, "connectionBudget": 100}}
    raw.update(parts)
    return parse_spec(raw)


def write_rules(tmp_path: Path, s=None) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups(OWNER, s or spec())}, sort_keys=False))
    return path


def series(metric: str, labels: str, values: str) -> dict[str, str]:
    return {"series": f"{metric}{{{SEL}{',' + labels if labels else ''}}}", "values": values}


def hist(metric: str, counts: dict[str, str], extra: str = "") -> list[dict[str, str]]:
    return [
        series(f"{metric}_bucket", f'le="{le}"' + (f",{extra}" if extra else ""), v)
        for le, v in counts.items()
    ]


RATE = "0+60x30"  # one event per second for 30 minutes
ZERO = "0x30"

# Each case: (alert, severity, input series that should fire, input series that should stay silent)
CASES = {
    "PhoenixApiLatencyHigh": (
        "warning",
        hist(
            "phoenix_http_request_duration_seconds", {"0.05": ZERO, "0.1": ZERO, "0.25": RATE, "+Inf": RATE}
        ),
        hist(
            "phoenix_http_request_duration_seconds", {"0.05": RATE, "0.1": RATE, "0.25": RATE, "+Inf": RATE}
        ),
    ),
    "PhoenixDbQuerySlow": (
        "warning",
        hist("phoenix_db_query_duration_seconds", {"0.01": ZERO, "0.025": ZERO, "0.05": RATE, "+Inf": RATE}),
        hist("phoenix_db_query_duration_seconds", {"0.01": RATE, "0.025": RATE, "0.05": RATE, "+Inf": RATE}),
    ),
    "PhoenixCacheHitRatioLow": (
        "warning",
        [  # 100 lookups/min: 90 served by a cache, 10 by PostgreSQL → 90 %
            series("phoenix_cache_lookups_total", 'result="hit"', "0+90x30"),
            series("phoenix_cache_lookups_total", 'result="miss"', "0+10x30"),
        ],
        [  # 98 of 100 served by a cache → 98 %
            series("phoenix_cache_lookups_total", 'result="hit"', "0+98x30"),
            series("phoenix_cache_lookups_total", 'result="miss"', "0+2x30"),
        ],
    ),
    "PhoenixErrorRateHigh": (
        "critical",
        [  # 2 % 5xx
            series(
                "phoenix_http_request_duration_seconds_count",
                'route="/api/auth/login",status="500"',
                "0+2x30",
            ),
            series(
                "phoenix_http_request_duration_seconds_count",
                'route="/api/auth/login",status="200"',
                "0+98x30",
            ),
        ],
        [  # 0.5 % 5xx
            series(
                "phoenix_http_request_duration_seconds_count",
                'route="/api/auth/login",status="503"',
                "0+1x30",
            ),
            series(
                "phoenix_http_request_duration_seconds_count",
                'route="/api/auth/login",status="200"',
                "0+199x30",
            ),
        ],
    ),
    "PhoenixDbPoolSaturated": (
        "warning",
        [series("phoenix_db_pool_connections", 'state="waiting"', "3x30")],
        [
            series("phoenix_db_pool_connections", 'state="waiting"', "0x30"),
            series("phoenix_db_pool_connections", 'state="in_use"', "10x30"),
        ],
    ),
}


def alerts_query(alert: str) -> str:
    return f'ALERTS{{alertname="{alert}",alertstate="firing"}}'


def unit_tests(rules_file: Path) -> dict[str, Any]:
    tests = []
    for alert, (severity, firing, silent) in CASES.items():
        labels = {
            "__name__": "ALERTS",
            "alertname": alert,
            "alertstate": "firing",
            "severity": severity,
            **RULE_LABELS,
        }
        label_text = "{" + ",".join(f'{k}="{v}"' for k, v in labels.items() if k != "__name__") + "}"
        tests.append(
            {
                "interval": "1m",
                "input_series": firing,
                "promql_expr_test": [
                    # `for: 5m` → pending at first, firing after five minutes above the threshold.
                    {"expr": alerts_query(alert), "eval_time": "3m", "exp_samples": []},
                    {
                        "expr": alerts_query(alert),
                        "eval_time": "15m",
                        "exp_samples": [{"labels": "ALERTS" + label_text, "value": 1}],
                    },
                ],
            }
        )
        tests.append(
            {
                "interval": "1m",
                "input_series": silent,
                "promql_expr_test": [
                    {"expr": f'ALERTS{{alertname="{alert}"}}', "eval_time": "15m", "exp_samples": []},
                    {"expr": f'ALERTS{{alertname="{alert}"}}', "eval_time": "25m", "exp_samples": []},
                ],
            }
        )
    return {"rule_files": [str(rules_file)], "evaluation_interval": "1m", "tests": tests}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False)


def test_check_rules_default_and_customised(tmp_path):
    for i, s in enumerate(
        [
            spec(),
            spec(cache={"enableAuthCache": False}),
            spec(monitoring={"prometheusRule": {"thresholds": {"apiLatencyMs": 0.5}, "for": "1m"}}),
        ]
    ):
        d = tmp_path / str(i)
        d.mkdir()
        result = promtool("check", "rules", str(write_rules(d, s)))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout


def test_every_generated_alert_has_a_case(tmp_path):
    names = {r["alert"] for r in rule_groups(OWNER, spec())[0]["rules"]}
    assert names == set(CASES)


def test_alerts_fire_above_and_stay_silent_below(tmp_path):
    rules = write_rules(tmp_path)
    test_file = tmp_path / "tests.yaml"
    test_file.write_text(yaml.safe_dump(unit_tests(rules), sort_keys=False))
    result = promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_catches_a_broken_case(tmp_path):
    """Guard against a test that cannot fail: swap a firing and a silent input, promtool must fail."""
    rules = write_rules(tmp_path)
    doc = unit_tests(rules)
    doc["tests"][0]["input_series"], doc["tests"][1]["input_series"] = (
        doc["tests"][1]["input_series"],
        doc["tests"][0]["input_series"],
    )
    test_file = tmp_path / "tests.yaml"
    test_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert promtool("test", "rules", str(test_file)).returncode != 0
