"""PrometheusRule with the seed's alerts, each switchable, thresholds from the spec.

Expressions use the auth service's metric names (shared contract):
  phoenix_http_request_duration_seconds   histogram {route, method, status}
  phoenix_db_query_duration_seconds       histogram {query}
  phoenix_cache_lookups_total             counter   {result="hit"|"miss"}  once per logical lookup:
                                                    hit = served by L1 or L2, miss = by PostgreSQL
  phoenix_db_pool_connections             gauge     {state}   (state="waiting" = callers queued)
Series are selected by the labels a ServiceMonitor scrape adds: namespace and job (= Service name).
`rule_groups()` returns the plain rule-file groups so promtool can check them as-is.
"""

from __future__ import annotations

from typing import Any

from phoenix_operator.builders.common import Owner, metadata
from phoenix_operator.spec import PhoenixAuthSpec

WINDOW = "5m"


def _fmt(value: float) -> str:
    return f"{value:g}"


def rule_groups(owner: Owner, spec: PhoenixAuthSpec) -> list[dict[str, Any]]:
    rule = spec.monitoring.prometheus_rule
    th = rule.thresholds
    al = rule.alerts
    sel = f'namespace="{owner.namespace}",job="{owner.auth_name}"'
    common_labels = {"namespace": owner.namespace, "phoenixauth": owner.name}

    def alert(name: str, expr: str, severity: str, summary: str, description: str) -> dict[str, Any]:
        return {
            "alert": name,
            "expr": expr,
            "for": rule.for_duration,
            "labels": {**common_labels, "severity": severity},
            "annotations": {
                "summary": summary,
                "description": description,
                "runbook_url": f"{rule.runbook_base_url}#{name.lower()}",
            },
        }

    rules: list[dict[str, Any]] = []
    if al.api_latency:
        seconds = th.api_latency_ms / 1000
        rules.append(
            alert(
                "PhoenixApiLatencyHigh",
                "histogram_quantile(0.95, sum by (le) "
                f"(rate(phoenix_http_request_duration_seconds_bucket{{{sel}}}[{WINDOW}]))) > {_fmt(seconds)}",
                "warning",
                f"Phoenix auth p95 API latency above {_fmt(th.api_latency_ms)} ms",
                "95th percentile HTTP latency of {{ $labels.namespace }}/"
                + owner.name
                + " is {{ $value }}s.",
            )
        )
    if al.db_query_latency:
        seconds = th.db_query_ms / 1000
        rules.append(
            alert(
                "PhoenixDbQuerySlow",
                "histogram_quantile(0.95, sum by (le) "
                f"(rate(phoenix_db_query_duration_seconds_bucket{{{sel}}}[{WINDOW}]))) > {_fmt(seconds)}",
                "warning",
                f"Phoenix auth p95 database query time above {_fmt(th.db_query_ms)} ms",
                "95th percentile query time is {{ $value }}s; check indexes (phoenix-auth migrate) and load.",
            )
        )
    any_cache = spec.cache.enable_auth_cache or spec.cache.enable_query_cache
    if al.cache_hit_ratio and any_cache:
        # The service counts each logical lookup once (a session check reads two records, a login
        # miss skips L2, which never holds hashes), so per-layer counters cannot give this ratio.
        # A lookup that Redis could not answer (error) is served by PostgreSQL: a miss.
        expr = (
            f'(sum(rate(phoenix_cache_lookups_total{{{sel},result="hit"}}[{WINDOW}]))'
            f" / sum(rate(phoenix_cache_lookups_total{{{sel}}}[{WINDOW}])))"
            f" < {_fmt(th.cache_hit_ratio)}"
        )
        rules.append(
            alert(
                "PhoenixCacheHitRatioLow",
                expr,
                "warning",
                f"Phoenix auth cache hit ratio below {_fmt(th.cache_hit_ratio * 100)} %",
                "Cache hit ratio is {{ $value | humanizePercentage }}; is Redis up? is the TTL too short?",
            )
        )
    if al.error_rate:
        expr = (
            f'(sum(rate(phoenix_http_request_duration_seconds_count{{{sel},status=~"5.."}}[{WINDOW}]))'
            f" / sum(rate(phoenix_http_request_duration_seconds_count{{{sel}}}[{WINDOW}])))"
            f" > {_fmt(th.error_rate)}"
        )
        rules.append(
            alert(
                "PhoenixErrorRateHigh",
                expr,
                "critical",
                f"Phoenix auth 5xx error rate above {_fmt(th.error_rate * 100)} %",
                "{{ $value | humanizePercentage }} of requests fail with 5xx.",
            )
        )
    if al.pool_saturation:
        rules.append(
            alert(
                "PhoenixDbPoolSaturated",
                f'max(phoenix_db_pool_connections{{{sel},state="waiting"}}) > 0',
                "warning",
                "Phoenix auth requests are waiting for a database connection",
                "Callers queue for a pooled connection; raise the connection budget or lower load.",
            )
        )
    return [{"name": f"phoenix-auth.{owner.namespace}.{owner.name}", "rules": rules}] if rules else []


def build_prometheus_rule(owner: Owner, spec: PhoenixAuthSpec) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": metadata(owner, owner.rule_name, "monitoring"),
        "spec": {"groups": rule_groups(owner, spec)},
    }
