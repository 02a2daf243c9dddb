"""Typed spec parsing: defaults match the CRD, bad specs name the field to fix."""

from __future__ import annotations

import pytest

from phoenix_operator.errors import SpecInvalid
from phoenix_operator.spec import parse_spec, secret_uses

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


@pytest.mark.parametrize(
    "entry", ["10.0.0.0/8", "10.0.0.1/8", "192.168.1.1", "2001:db8::/32", "fd12:3456:789a::/48", "::1"]
)
def test_trusted_proxies_up_to_a_slash_8_or_an_ipv6_slash_32_are_accepted(entry):
    assert parse_spec(with_(authService={"trustedProxies": [entry]})).auth_service.trusted_proxies == (entry,)


@pytest.mark.parametrize(
    ("entry", "text"),
    [
        ("0.0.0.0/0", "trusts every address"),
        ("1.0.0.0/7", "at most /8 wide for IPv4"),
        ("::/0", "trusts every address"),
        ("2001:db8::/31", "at most /32 wide for IPv6"),
        ("fd00::/8", "at most /32 wide for IPv6"),
        ("::ffff:0:0/96", "write it as IPv4 (0.0.0.0/0)"),
        ("::ffff:10.0.0.0/104", "write it as IPv4 (10.0.0.0/8)"),
        ("fe80::1%eth0", "not an IP address or CIDR"),
        ("10.0.0.0/08", "not an IP address or CIDR"),
        ("proxy.example.com", "not an IP address or CIDR"),
    ],
)
def test_trusted_proxies_too_wide_or_not_a_cidr_are_refused_naming_the_field(entry, text):
    with pytest.raises(SpecInvalid) as info:
        parse_spec(with_(authService={"trustedProxies": ["10.1.0.0/16", entry]}))
    assert info.value.field == "spec.authService.trustedProxies"
    assert text in info.value.message and repr(entry) in info.value.message


def secret_env(name):
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": "app-secrets", "key": name.lower()}}}


@pytest.mark.parametrize(
    ("env", "text"),
    [
        ({"name": "APP_API_TOKEN", "value": "x" * 40}, "looks like a secret"),
        ({"name": "PHOENIX_CACHE_SIGNING_KEY", "value": "k" * 40}, "valueFrom.secretKeyRef"),
        ({"name": "db_password", "value": "hunter2"}, "looks like a secret"),
        ({"name": "SMTP_PASS", "value": "hunter2"}, "looks like a secret"),
        ({"name": "CLIENT_SECRET", "value": "s"}, "looks like a secret"),
        ({"name": "AUDIT_URL", "value": "https://user:pw@audit.example/x"}, "URL with credentials"),
        ({"name": "WEBHOOK", "value": "https://ghp_token@github.example/hook"}, "URL with credentials"),
        (
            {"name": "X", "value": "1", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            "not both",
        ),
    ],
)
def test_secret_looking_literal_extra_env_is_refused(env, text):
    with pytest.raises(SpecInvalid) as info:
        parse_spec(with_(authService={"extraEnv": [env]}))
    assert info.value.field == "spec.authService.extraEnv[0]"
    assert text in info.value.message


def test_extra_env_from_a_secret_and_plain_literals_are_accepted():
    spec = parse_spec(
        with_(
            authService={
                "extraEnv": [
                    secret_env("APP_API_TOKEN"),
                    {"name": "PHOENIX_LOG_LEVEL", "value": "DEBUG"},
                    {"name": "BYPASS_CACHE", "value": "1"},  # ends in PASS only inside a word
                    {"name": "EMPTY_TOKEN", "value": ""},  # an empty literal leaks nothing
                    {"name": "DOCS_URL", "value": "https://docs.example/a@b"},  # @ only in the path
                ]
            }
        )
    )
    token = spec.auth_service.extra_env[0]
    assert token.value is None and token.secret_ref is not None
    assert (token.secret_ref.name, token.secret_ref.key) == ("app-secrets", "app_api_token")


def test_extra_env_names_are_unique():
    with pytest.raises(SpecInvalid, match="listed twice"):
        parse_spec(
            with_(authService={"extraEnv": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]})
        )


def test_secret_uses_name_every_referenced_secret_with_its_field():
    spec = parse_spec(
        {
            "database": {
                "secretRef": {"name": "db"},
                "migrationSecretRef": {"name": "db-owner"},
                "connectionBudget": 100,
            },
            "redis": {"mode": "external", "external": {"secretRef": {"name": "redis"}}},
            "authService": {
                "extraEnv": [{"name": "A", "value": "1"}, secret_env("APP_API_TOKEN")],
                "adminTokenSecretRef": {"name": "admin"},
                "cacheSigningKeySecretRef": {"name": "keys", "key": "l2"},
            },
        }
    )
    uses = {(u.field, u.ref.name, u.ref.key, u.auth_pods) for u in secret_uses(spec)}
    assert uses == {
        ("spec.database.secretRef", "db", "DATABASE_URL", True),
        ("spec.database.migrationSecretRef", "db-owner", "DATABASE_URL", False),
        ("spec.redis.external.secretRef", "redis", "REDIS_URL", True),
        ("spec.authService.extraEnv[1].valueFrom.secretKeyRef", "app-secrets", "app_api_token", True),
        ("spec.authService.adminTokenSecretRef", "admin", "PHOENIX_ADMIN_TOKEN", True),
        ("spec.authService.cacheSigningKeySecretRef", "keys", "l2", True),
    }
    assert [u.field for u in secret_uses(parse_spec(MIN))] == ["spec.database.secretRef"]


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("PHOENIX_ADMIN_TOKEN", "spec.authService.adminTokenSecretRef"),
        ("PHOENIX_CACHE_SIGNING_KEY", "spec.authService.cacheSigningKeySecretRef"),
        ("PHOENIX_ADMIN_PORT", "spec.authService.adminPort"),
    ],
)
def test_the_operator_s_keys_are_not_extra_env_and_the_error_names_the_field(name, hint):
    env = {"name": name, "valueFrom": {"secretKeyRef": {"name": "mine", "key": "k"}}}
    with pytest.raises(SpecInvalid) as info:
        parse_spec(with_(authService={"extraEnv": [env]}))
    assert f"{name} is set by the operator" in info.value.message and hint in info.value.message


def test_the_admin_port_must_differ_from_the_public_port():
    with pytest.raises(SpecInvalid) as info:
        parse_spec(with_(authService={"port": 4000, "adminPort": 4000}))
    assert info.value.field == "spec.authService"
    assert "adminPort must differ from port (both are 4000)" in info.value.message
    assert parse_spec(MIN).auth_service.admin_port == 3008


def test_no_admin_service_needs_no_service_monitor():
    no_admin = {"adminService": {"enabled": False}}
    with pytest.raises(SpecInvalid) as info:
        parse_spec(with_(authService=no_admin))
    assert "monitoring.serviceMonitor.enabled needs authService.adminService.enabled" in info.value.message
    spec = parse_spec(with_(authService=no_admin, monitoring={"serviceMonitor": {"enabled": False}}))
    assert spec.auth_service.admin_service.enabled is False


def test_a_network_policy_peer_needs_a_selector():
    with pytest.raises(SpecInvalid) as info:
        parse_spec(with_(authService={"networkPolicy": {"enabled": True, "adminFrom": [{}]}}))
    assert info.value.field == "spec.authService.networkPolicy.adminFrom[0]"
    assert "set namespaceSelector, podSelector or both" in info.value.message
    assert parse_spec(MIN).auth_service.network_policy.enabled is False  # opt-in
