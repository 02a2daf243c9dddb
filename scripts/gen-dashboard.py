"""Generate helm/phoenix-operator/dashboards/phoenix.json (the Grafana dashboard shipped by the chart).

Run: python3 scripts/gen-dashboard.py > helm/phoenix-operator/dashboards/phoenix.json
Metric and label names must be the ones the auth service and the operator export;
tests/unit/test_dashboard.py checks them against the real registries and that the JSON is this output.
"""

import json

DS = {"type": "prometheus", "uid": "${datasource}"}
panels = []
y = 0


def row(title):
    global y
    panels.append(
        {
            "type": "row",
            "title": title,
            "collapsed": False,
            "id": len(panels) + 1,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
            "panels": [],
        }
    )
    y += 1


def ts(title, desc, targets, unit, x, w=12, h=8, thresholds=None, max_=None):
    p = {
        "type": "timeseries",
        "title": title,
        "description": desc,
        "id": len(panels) + 1,
        "datasource": DS,
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "custom": {
                    "lineWidth": 1,
                    "fillOpacity": 10,
                    "thresholdsStyle": {"mode": "line" if thresholds else "off"},
                },
                "thresholds": {
                    "mode": "absolute",
                    "steps": [{"color": "green", "value": None}] + (thresholds or []),
                },
            },
            "overrides": [],
        },
        "options": {
            "legend": {
                "displayMode": "table",
                "placement": "bottom",
                "calcs": ["mean", "max", "lastNotNull"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": [
            {"datasource": DS, "refId": chr(65 + i), "expr": e, "legendFormat": legend}
            for i, (e, legend) in enumerate(targets)
        ],
    }
    if max_ is not None:
        p["fieldConfig"]["defaults"]["max"] = max_
        p["fieldConfig"]["defaults"]["min"] = 0
    panels.append(p)


def stat(title, desc, expr, unit, x, steps, w=6):
    panels.append(
        {
            "type": "stat",
            "title": title,
            "description": desc,
            "id": len(panels) + 1,
            "datasource": DS,
            "gridPos": {"h": 4, "w": w, "x": x, "y": y},
            "fieldConfig": {
                "defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}},
                "overrides": [],
            },
            "options": {
                "colorMode": "background",
                "graphMode": "area",
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            },
            "targets": [{"datasource": DS, "refId": "A", "expr": expr, "instant": False}],
        }
    )


SEL = 'namespace=~"$namespace"'
LOGIN = f'{SEL}, route=~"/api/auth/(phoenix|login)"'

row("Overview")
stat(
    "Login p95 latency",
    "95th percentile of login request latency (seed target: < 100 ms).",
    f"histogram_quantile(0.95, sum by (le) (rate(phoenix_http_request_duration_seconds_bucket{{{LOGIN}}}[5m])))",
    "s",
    0,
    [{"color": "green", "value": None}, {"color": "orange", "value": 0.08}, {"color": "red", "value": 0.1}],
)
stat(
    "Cache hit ratio",
    "Share of logical lookups answered by L1 or L2 rather than PostgreSQL (seed target: >= 95 %).",
    f'sum(rate(phoenix_cache_lookups_total{{{SEL}, result="hit"}}[5m])) / clamp_min(sum(rate(phoenix_cache_lookups_total{{{SEL}}}[5m])), 1e-9)',
    "percentunit",
    6,
    [{"color": "red", "value": None}, {"color": "orange", "value": 0.9}, {"color": "green", "value": 0.95}],
)
stat(
    "HTTP 5xx ratio",
    "Share of requests answered with a 5xx (seed target: < 1 %).",
    f'sum(rate(phoenix_http_request_duration_seconds_count{{{SEL}, status=~"5.."}}[5m])) / clamp_min(sum(rate(phoenix_http_request_duration_seconds_count{{{SEL}}}[5m])), 1e-9)',
    "percentunit",
    12,
    [{"color": "green", "value": None}, {"color": "orange", "value": 0.005}, {"color": "red", "value": 0.01}],
)
stat(
    "Operator errors (15m)",
    "Reconcile errors the operator counted in the last 15 minutes.",
    "sum(increase(phoenix_operator_errors_total[15m]))",
    "short",
    18,
    [{"color": "green", "value": None}, {"color": "red", "value": 1}],
)
y += 4

row("Login")
ts(
    "Login latency",
    "Login request latency percentiles, by route.",
    [
        (
            f"histogram_quantile({q}, sum by (le, route) (rate(phoenix_http_request_duration_seconds_bucket{{{LOGIN}}}[5m])))",
            f"p{int(q * 100)} {{{{route}}}}",
        )
        for q in (0.5, 0.95, 0.99)
    ],
    "s",
    0,
    thresholds=[{"color": "red", "value": 0.1}],
)
ts(
    "Login outcomes",
    "Login attempts per second by outcome (success, invalid credentials, throttled, ...).",
    [(f"sum by (outcome) (rate(phoenix_login_attempts_total{{{SEL}}}[5m]))", "{{outcome}}")],
    "reqps",
    12,
)
y += 8

row("Cache and database")
ts(
    "Cache hit ratio by layer",
    "Hits / requests at each cache layer (l1 in-process, l2 Redis: asked only on an L1 miss), and overall (any layer vs PostgreSQL).",
    [
        (
            f'sum by (layer) (rate(phoenix_cache_requests_total{{{SEL}, result="hit"}}[5m])) / clamp_min(sum by (layer) (rate(phoenix_cache_requests_total{{{SEL}}}[5m])), 1e-9)',
            "{{layer}}",
        ),
        (
            f'sum(rate(phoenix_cache_lookups_total{{{SEL}, result="hit"}}[5m])) / clamp_min(sum(rate(phoenix_cache_lookups_total{{{SEL}}}[5m])), 1e-9)',
            "overall",
        ),
    ],
    "percentunit",
    0,
    thresholds=[{"color": "red", "value": 0.95}],
    max_=1,
)
ts(
    "DB query latency (p95)",
    "95th percentile of database query latency by query (seed target: < 25 ms).",
    [
        (
            f"histogram_quantile(0.95, sum by (le, query) (rate(phoenix_db_query_duration_seconds_bucket{{{SEL}}}[5m])))",
            "{{query}}",
        )
    ],
    "s",
    12,
    thresholds=[{"color": "red", "value": 0.025}],
)
y += 8
ts(
    "Connection pool use",
    "Connections of the auth service pools by state, summed over pods.",
    [(f"sum by (state) (phoenix_db_pool_connections{{{SEL}}})", "{{state}}")],
    "short",
    0,
)
ts(
    "Error rate",
    "Share of HTTP requests answered 5xx, and 4xx for context.",
    [
        (
            f'sum(rate(phoenix_http_request_duration_seconds_count{{{SEL}, status=~"5.."}}[5m])) / clamp_min(sum(rate(phoenix_http_request_duration_seconds_count{{{SEL}}}[5m])), 1e-9)',
            "5xx",
        ),
        (
            f'sum(rate(phoenix_http_request_duration_seconds_count{{{SEL}, status=~"4.."}}[5m])) / clamp_min(sum(rate(phoenix_http_request_duration_seconds_count{{{SEL}}}[5m])), 1e-9)',
            "4xx",
        ),
    ],
    "percentunit",
    12,
    thresholds=[{"color": "red", "value": 0.01}],
)
y += 8

row("Operator")
ts(
    "Reconciles",
    "Reconciles per second by result.",
    [("sum by (result) (rate(phoenix_operator_reconciles_total[5m]))", "{{result}}")],
    "ops",
    0,
    w=8,
)
ts(
    "Reconcile errors",
    "Operator errors per second by kind (the error reason: Conflict, Forbidden, InvalidSpec, ...).",
    [("sum by (kind) (rate(phoenix_operator_errors_total[5m]))", "{{kind}}")],
    "ops",
    8,
    w=8,
)
ts(
    "Reconcile duration",
    "Reconcile duration percentiles.",
    [
        (
            f"histogram_quantile({q}, sum by (le) (rate(phoenix_operator_reconcile_duration_seconds_bucket[5m])))",
            f"p{int(q * 100)}",
        )
        for q in (0.5, 0.95)
    ],
    "s",
    16,
    w=8,
)
y += 8

dash = {
    "title": "Phoenix auth service and operator",
    "uid": "phoenix-overview",
    "description": "Login latency, cache hit ratio by layer, pool use, error rate and operator reconcile health.",
    "tags": ["phoenix", "auth", "operator"],
    "editable": True,
    "graphTooltip": 1,
    "schemaVersion": 39,
    "version": 1,
    "time": {"from": "now-1h", "to": "now"},
    "refresh": "30s",
    "timezone": "",
    "annotations": {"list": []},
    "templating": {
        "list": [
            {
                "name": "datasource",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
                "hide": 0,
            },
            {
                "name": "namespace",
                "label": "Namespace",
                "type": "query",
                "datasource": DS,
                "query": {
                    "query": "label_values(phoenix_http_request_duration_seconds_count, namespace)",
                    "refId": "ns",
                },
                "definition": "label_values(phoenix_http_request_duration_seconds_count, namespace)",
                "includeAll": True,
                "multi": True,
                "allValue": ".*",
                "current": {},
                "refresh": 2,
                "hide": 0,
            },
        ]
    },
    "panels": panels,
}
print(json.dumps(dash, indent=2))
