"""Typed spec parsing: defaults match the CRD, bad specs name the field to fix."""

from __future__ import annotations

import pytest

from phoenix_operator.errors import SpecInvalid
from phoenix_operator.spec import parse_spec

MIN = {"database": {"secretRef": {"name": "db"}, "connectionBudget": 100}}


def with_(**parts):
    spec = {"database": {"secretRef": {"name": "db"}, "connectionBudget": 100}}
    spec.update(parts)
    return spec


def test_defaults():
    s = parse_spec(MIN)
    assert s.auth_service.port == 3007
    assert (s.auth_service.replicas.min, s.auth_service.replicas.max) == (2, 4)
    assert s.database.secret_ref.key == "DATABASE_URL"
    assert s.redis.mode == "managed" and s.redis.managed_or_default.eviction_policy == "allkeys-lru"
    assert s.cache.ttl_seconds == 300 and s.cache.summary == "L1+L2"
    th = s.monitoring.prometheus_rule.thresholds
    assert (th.api_latency_ms, th.db_query_ms, th.cache_hit_ratio, th.error_rate) == (100, 25, 0.95, 0.01)
    assert s.migrations.index_set == "seed" and not s.migrations.rollback
    assert not s.paused


@pytest.mark.parametrize(
    ("spec", "field", "text"),
    [
        ({}, "spec.database", "Field required"),
        (with_(authService={"replicas": {"min": 5, "max": 2}}), "spec.authService.replicas", "must be <="),
        (with_(authService={"port": 80}), "spec.authService.port", "greater than or equal to 1024"),
        (
            with_(authService={"trustedProxies": ["10.0.0.0/8", "not-an-ip"]}),
            "spec.authService.trustedProxies",
            "CIDR",
        ),
        (
            with_(authService={"extraEnv": [{"name": "DATABASE_URL", "value": "x"}]}),
            "spec.authService.extraEnv",
            "cannot be overridden",
        ),
        (with_(pool={"minPerPod": 9, "maxPerPod": 3}), "spec.pool", "minPerPod"),
        (with_(pool={"policy": "greedy"}), "spec.pool.policy", "elastic"),
        (with_(redis={"mode": "external"}), "spec.redis", "external.secretRef"),
        (
            with_(redis={"mode": "managed", "external": {"secretRef": {"name": "r"}}}),
            "spec.redis",
            "must not be set",
        ),
        (
            with_(redis={"managed": {"evictionPolicy": "lru"}}),
            "spec.redis.managed.evictionPolicy",
            "allkeys-lru",
        ),
        (with_(cache={"ttlSeconds": 0}), "spec.cache.ttlSeconds", "greater than or equal to 1"),
        (with_(migrations={"indexSet": "everything"}), "spec.migrations.indexSet", "seed"),
        ({"database": {"secretRef": {"name": "db"}}}, "spec.database", "exactly one"),
        (
            {"database": {"secretRef": {"name": "db"}, "connectionBudget": 10, "detect": True}},
            "spec.database",
            "exactly one",
        ),
        ({"database": {"secretRef": {"name": "db"}, "connectionBudget": 10}}, "spec", "needs 8"),
        (
            {"database": {"secretRef": {"name": "Bad_Name"}, "connectionBudget": 100}},
            "spec.database.secretRef.name",
            "pattern",
        ),
    ],
)
def test_invalid_specs_name_the_field(spec, field, text):
    with pytest.raises(SpecInvalid) as info:
        parse_spec(spec)
    assert info.value.field == field
    assert text in info.value.message
    assert info.value.message.startswith(field)


def test_detect_without_budget_is_valid():
    s = parse_spec({"database": {"secretRef": {"name": "db"}, "detect": True}})
    assert s.database.detect and s.database.connection_budget is None


def test_camel_case_round_trip_of_monitoring_fields():
    s = parse_spec(with_(monitoring={"prometheusRule": {"for": "10m", "alerts": {"errorRate": False}}}))
    assert s.monitoring.prometheus_rule.for_duration == "10m"
    assert not s.monitoring.prometheus_rule.alerts.error_rate
