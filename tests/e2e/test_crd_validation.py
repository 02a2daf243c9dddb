"""Bad PhoenixAuth specs are rejected by the real API server (OpenAPI schema + CEL rules of the
CRD installed by `helm install`), with a message that names the field to fix. No operator needed:
the object never exists."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml
from e2e_kube import ControlPlane

VALID: dict[str, Any] = {
    "apiVersion": "auth.phoenix.dev/v1alpha1",
    "kind": "PhoenixAuth",
    "metadata": {"name": "bad"},
    "spec": {"database": {"secretRef": {"name": "phoenix-db"}, "connectionBudget": 50}},
}


def spec_with(path: str, value: Any) -> dict[str, Any]:
    """VALID with spec.<path> set (dotted path; None deletes the key)."""
    obj = copy.deepcopy(VALID)
    node = obj
    *parents, leaf = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    if value is None:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return obj


# (id, object, text the API server's message must contain: the field path and/or the rule's message)
BAD_SPECS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("database-missing", spec_with("spec.database", None), ["spec.database", "Required value"]),
    (
        "secretRef-missing",
        spec_with("spec.database", {"connectionBudget": 50}),
        ["spec.database.secretRef", "Required value"],
    ),
    ("replicas-min-zero", spec_with("spec.authService.replicas.min", 0), ["spec.authService.replicas.min"]),
    (
        "replicas-min-above-max",
        spec_with("spec.authService.replicas", {"min": 5, "max": 3}),
        ["spec.authService.replicas.min must be <= spec.authService.replicas.max"],
    ),
    (
        "replicas-wrong-type",
        spec_with("spec.authService.replicas.max", "four"),
        ["spec.authService.replicas.max", "integer"],
    ),
    ("port-privileged", spec_with("spec.authService.port", 80), ["spec.authService.port"]),
    ("image-with-space", spec_with("spec.authService.image", "bad image"), ["spec.authService.image"]),
    ("pool-policy-enum", spec_with("spec.pool.policy", "greedy"), ["spec.pool.policy", "Unsupported value"]),
    (
        "pool-min-above-max",
        spec_with("spec.pool", {"minPerPod": 5, "maxPerPod": 3}),
        ["spec.pool.minPerPod must be <= spec.pool.maxPerPod"],
    ),
    (
        "budget-and-detect",
        spec_with("spec.database.detect", True),
        ["set exactly one of connectionBudget or detect"],
    ),
    (
        "neither-budget-nor-detect",
        spec_with("spec.database.connectionBudget", None),
        ["set exactly one of connectionBudget or detect"],
    ),
    (
        "budget-too-small-for-max-replicas",
        spec_with("spec.database.connectionBudget", 10),
        ["spec.database.connectionBudget", "replicas.max", "pool.minPerPod"],
    ),
    (
        "external-redis-without-secret",
        spec_with("spec.redis", {"mode": "external"}),
        ["spec.redis.mode external requires spec.redis.external.secretRef"],
    ),
    (
        "managed-redis-with-external",
        spec_with("spec.redis", {"mode": "managed", "external": {"secretRef": {"name": "r"}}}),
        ["spec.redis.external must not be set when spec.redis.mode is managed"],
    ),
    ("redis-mode-enum", spec_with("spec.redis.mode", "sentinel"), ["spec.redis.mode", "Unsupported value"]),
    (
        "trusted-proxy-not-a-cidr",
        spec_with("spec.authService.trustedProxies", ["proxy.example.com"]),
        ["spec.authService.trustedProxies"],
    ),
    (
        "trusted-proxy-everyone-v4",
        spec_with("spec.authService.trustedProxies", ["10.0.0.0/8", "0.0.0.0/0"]),
        ["spec.authService.trustedProxies[1]", "trusts too many addresses", "at most /8 wide for IPv4"],
    ),
    (
        "trusted-proxy-wider-than-slash-8",
        spec_with("spec.authService.trustedProxies", ["1.0.0.0/7"]),
        ["spec.authService.trustedProxies[0]", "trusts too many addresses"],
    ),
    (
        "trusted-proxy-everyone-v6",
        spec_with("spec.authService.trustedProxies", ["::/0"]),
        ["spec.authService.trustedProxies[0]", "trusts too many addresses", "/32 for IPv6"],
    ),
    (
        "trusted-proxy-v6-wider-than-slash-32",
        spec_with("spec.authService.trustedProxies", ["2001:db8::/31"]),
        ["spec.authService.trustedProxies[0]", "trusts too many addresses"],
    ),
    (
        "trusted-proxy-ipv4-mapped-everyone",
        spec_with("spec.authService.trustedProxies", ["::ffff:0:0/96"]),
        ["spec.authService.trustedProxies[0]", "write IPv4 ranges as IPv4"],
    ),
    (
        "extra-env-literal-token",
        spec_with("spec.authService.extraEnv", [{"name": "APP_API_TOKEN", "value": "t" * 40}]),
        ["spec.authService.extraEnv[0]", "APP_API_TOKEN looks like a secret", "valueFrom.secretKeyRef"],
    ),
    (
        "extra-env-url-with-password",
        spec_with(
            "spec.authService.extraEnv", [{"name": "AUDIT_URL", "value": "https://u:pw@audit.example/"}]
        ),
        ["spec.authService.extraEnv[0]", "AUDIT_URL holds a URL with credentials"],
    ),
    (
        "extra-env-value-and-value-from",
        spec_with(
            "spec.authService.extraEnv",
            [{"name": "A", "value": "1", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        ),
        ["spec.authService.extraEnv[0]", "set value or valueFrom, not both"],
    ),
    (
        "extra-env-secret-ref-without-key",
        spec_with("spec.authService.extraEnv", [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s"}}}]),
        ["spec.authService.extraEnv[0].valueFrom.secretKeyRef.key", "Required value"],
    ),
    (
        "migration-secret-without-name",
        spec_with("spec.database.migrationSecretRef", {"key": "URL"}),
        ["spec.database.migrationSecretRef.name", "Required value"],
    ),
    (
        "extra-env-overrides-managed-variable",
        spec_with("spec.authService.extraEnv", [{"name": "DATABASE_URL", "value": "postgresql://x"}]),
        ["spec.authService.extraEnv must not set a variable the operator manages"],
    ),
    (
        "extra-env-admin-token",
        spec_with(
            "spec.authService.extraEnv",
            [{"name": "PHOENIX_ADMIN_TOKEN", "valueFrom": {"secretKeyRef": {"name": "a", "key": "t"}}}],
        ),
        ["spec.authService.extraEnv must not set a variable the operator manages", "adminTokenSecretRef"],
    ),
    (
        "admin-port-equals-port",
        spec_with("spec.authService", {"port": 4000, "adminPort": 4000}),
        ["spec.authService.adminPort", "must differ from spec.authService.port"],
    ),
    (
        "service-monitor-without-admin-service",
        spec_with("spec.authService.adminService", {"enabled": False}),
        ["spec.monitoring.serviceMonitor.enabled needs spec.authService.adminService.enabled"],
    ),
    (
        "network-policy-peer-without-selector",
        spec_with("spec.authService.networkPolicy", {"enabled": True, "adminFrom": [{}]}),
        ["spec.authService.networkPolicy.adminFrom", "set namespaceSelector, podSelector or both"],
    ),
    ("cache-ttl-zero", spec_with("spec.cache.ttlSeconds", 0), ["spec.cache.ttlSeconds"]),
    (
        "hit-ratio-above-one",
        spec_with("spec.monitoring.prometheusRule.thresholds.cacheHitRatio", 1.5),
        ["spec.monitoring.prometheusRule.thresholds.cacheHitRatio"],
    ),
    (
        "name-too-long",
        {**copy.deepcopy(VALID), "metadata": {"name": "a" * 41}},
        ["metadata.name must be at most 40 characters"],
    ),
]


@pytest.mark.parametrize(("obj", "expected"), [pytest.param(o, e, id=i) for i, o, e in BAD_SPECS])
def test_bad_spec_is_rejected_naming_the_field(
    control_plane: ControlPlane, helm_release: str, namespace: str, obj: dict[str, Any], expected: list[str]
) -> None:
    result = control_plane.apply(obj, namespace=namespace, check=False)
    assert result.returncode != 0, f"the API server accepted a bad spec: {result.stdout}"
    for text in expected:
        assert text in result.stderr, f"expected {text!r} in the API server's message:\n{result.stderr}"
    assert not control_plane.get("pxa", namespace=namespace)["items"]


def test_the_valid_base_spec_is_accepted_with_defaults(
    control_plane: ControlPlane, helm_release: str, namespace: str
) -> None:
    """The table's base is valid, so each rejection above is caused by the one field it changes."""
    created = control_plane.kubectl(
        "create", "-n", namespace, "--dry-run=server", "-o", "json", "-f", "-", input=yaml.safe_dump(VALID)
    ).stdout
    spec = json.loads(created)["spec"]
    assert spec["authService"]["replicas"] == {"min": 2, "max": 4}
    assert spec["redis"]["mode"] == "managed"
    assert spec["pool"]["policy"] == "elastic"


def test_what_the_new_rules_must_still_accept(
    control_plane: ControlPlane, helm_release: str, namespace: str
) -> None:
    """The widest accepted ranges, a secret-looking name taken from a Secret, a plain literal, and a
    migration Secret: the rules above refuse only what they name."""
    obj = spec_with("spec.authService.trustedProxies", ["10.0.0.0/8", "2001:db8::/32", "10.244.1.7"])
    obj["spec"]["authService"]["extraEnv"] = [
        {"name": "APP_API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "app", "key": "admin"}}},
        {"name": "PHOENIX_LOG_LEVEL", "value": "DEBUG"},
    ]
    obj["spec"]["database"]["migrationSecretRef"] = {"name": "phoenix-db-owner"}
    obj["spec"]["authService"]["adminTokenSecretRef"] = {"name": "team-admin"}
    obj["spec"]["authService"]["cacheSigningKeySecretRef"] = {"name": "team-keys", "key": "l2"}
    created = control_plane.kubectl(
        "create", "-n", namespace, "--dry-run=server", "-o", "json", "-f", "-", input=yaml.safe_dump(obj)
    ).stdout
    spec = json.loads(created)["spec"]
    assert spec["database"]["migrationSecretRef"] == {"name": "phoenix-db-owner", "key": "DATABASE_URL"}
    auth = spec["authService"]
    assert auth["adminTokenSecretRef"] == {"name": "team-admin", "key": "PHOENIX_ADMIN_TOKEN"}
    assert auth["cacheSigningKeySecretRef"] == {"name": "team-keys", "key": "l2"}
    assert (auth["adminPort"], auth["adminService"]) == (3008, {"enabled": True})
    assert (
        spec["authService"]["extraEnv"][0] == obj["spec"]["authService"]["extraEnv"][0]
    )  # no value defaulted


def test_at_least_ten_bad_specs() -> None:
    assert len(BAD_SPECS) >= 10
