"""Every builder: typed spec in → object dict out, as the API server and a user will see it."""

from __future__ import annotations

import base64

import pytest

from phoenix_operator.builders.common import (
    ANNOTATION_CONFIG_HASH,
    LABEL_WATCHED_SECRET,
    owner_reference,
    stable_hash,
)
from phoenix_operator.builders.configmap import build_configmap
from phoenix_operator.builders.deployment import build_deployment
from phoenix_operator.builders.hpa import build_hpa
from phoenix_operator.builders.migration_job import (
    build_migration_job,
    job_state,
    migration_command,
    migration_hash,
    migration_job_name,
)
from phoenix_operator.builders.pdb import build_pdb
from phoenix_operator.builders.prometheus_rule import build_prometheus_rule, rule_groups
from phoenix_operator.builders.redis import (
    build_redis_deployment,
    build_redis_network_policy,
    build_redis_secret,
    build_redis_service,
)
from phoenix_operator.builders.service import build_admin_service, build_service
from phoenix_operator.builders.service_monitor import build_service_monitor
from phoenix_operator.reconcile.auth import pool_for
from phoenix_operator.spec import parse_spec

BASE = {"database": {"secretRef": {"name": "db"}, "connectionBudget": 100}}


def spec_of(**parts):
    raw = {"database": {"secretRef": {"name": "db"}, "connectionBudget": 100}}
    raw.update(parts)
    return parse_spec(raw)


def pool_of(spec):
    return pool_for(spec, spec.database.connection_budget)


def deployment(owner, spec=None, **kw):
    spec = spec or spec_of()
    args = {"redis_secret": ("auth-redis-auth", "REDIS_URL"), "config_hash": "abc", "replicas": 2}
    args.update(kw)
    return build_deployment(owner, spec, pool_of(spec), **args)


def env_of(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def assert_restricted(pod_spec):
    """The "restricted" Pod Security Standard, field by field."""
    psc = pod_spec["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert psc.get("runAsUser", 1) != 0
    for c in pod_spec["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["runAsNonRoot"] is True
        assert "privileged" not in sc
    assert not any("hostPath" in v for v in pod_spec.get("volumes", []))
    assert not pod_spec.get("hostNetwork") and not pod_spec.get("hostPID")


def test_every_child_is_owned_and_labelled(owner):
    spec = spec_of()
    objs = [
        build_configmap(owner, spec, pool_of(spec)),
        deployment(owner),
        build_service(owner, spec),
        build_pdb(owner),
        build_hpa(owner, spec),
        build_redis_secret(owner, "pw"),
        build_redis_deployment(owner, spec.redis.managed_or_default, secret_hash="h"),
        build_redis_service(owner),
        build_redis_network_policy(owner),
        build_migration_job(owner, spec),
        build_prometheus_rule(owner, spec),
        build_service_monitor(owner, spec),
    ]
    for obj in objs:
        meta = obj["metadata"]
        assert meta["namespace"] == "demo"
        assert meta["ownerReferences"] == [owner_reference(owner)]
        assert meta["ownerReferences"][0]["controller"] is True
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "phoenix-operator"
        assert meta["labels"]["app.kubernetes.io/instance"] == "auth"
        assert len(meta["name"]) <= 63


def test_deployment_env_probes_and_security(owner):
    spec = spec_of(
        authService={
            "trustedProxies": ["10.0.0.0/8", "192.168.1.1"],
            "extraEnv": [{"name": "PHOENIX_LOG_LEVEL", "value": "DEBUG"}],
        },
        cache={"ttlSeconds": 120, "l1MaxEntries": 5000, "enableQueryCache": False},
    )
    dep = deployment(owner, spec)
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = env_of(c)
    assert env["DATABASE_URL"] == {"secretKeyRef": {"name": "db", "key": "DATABASE_URL"}}
    assert env["REDIS_URL"] == {"secretKeyRef": {"name": "auth-redis-auth", "key": "REDIS_URL"}}
    assert env["PHOENIX_MAX_DB_CONNECTIONS"] == "20"  # (100-5)//4 = 23 → clamp 20
    assert env["PHOENIX_MIN_DB_CONNECTIONS"] == "2"
    assert env["PHOENIX_CACHE_TTL"] == "120"
    assert env["PHOENIX_L1_MAX_ENTRIES"] == "5000"
    assert env["PHOENIX_ENABLE_AUTH_CACHE"] == "true"
    assert env["PHOENIX_ENABLE_QUERY_CACHE"] == "false"
    assert env["PHOENIX_ENABLE_MONITORING"] == "true"
    assert env["PHOENIX_HOST"] == "0.0.0.0"  # noqa: S104 - pods listen on the pod IP
    assert env["PHOENIX_PORT"] == "3007"
    assert env["PHOENIX_WORKERS"] == "1"
    assert env["PHOENIX_TRUSTED_PROXIES"] == "10.0.0.0/8,192.168.1.1"
    assert env["PHOENIX_LOG_LEVEL"] == "DEBUG"
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["ports"] == [
        {"name": "http", "containerPort": 3007, "protocol": "TCP"},
        {"name": "admin", "containerPort": 3008, "protocol": "TCP"},
    ]
    assert env["PHOENIX_ADMIN_PORT"] == "3008"
    assert c["command"] == ["phoenix-auth", "serve"]
    assert_restricted(pod)
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["template"]["metadata"]["annotations"][ANNOTATION_CONFIG_HASH] == "abc"
    # Selector is a subset of the template labels (the API server requires it).
    sel = dep["spec"]["selector"]["matchLabels"]
    assert sel.items() <= dep["spec"]["template"]["metadata"]["labels"].items()


def test_auth_pods_drain_before_sigterm_within_the_grace_period(owner):
    """A terminating auth pod keeps serving while kube-proxy catches up, with every response asking
    its client to reconnect elsewhere (phoenix-auth drain), and SIGTERM still ends it in time."""
    pod = deployment(owner)["spec"]["template"]["spec"]
    command = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:2] == ["phoenix-auth", "drain"]
    seconds = float(command[command.index("--seconds") + 1])
    assert seconds >= 1
    # the drain, then uvicorn's graceful shutdown (10 s), fit in the grace period
    assert seconds + 10 < pod["terminationGracePeriodSeconds"]


def test_no_secret_value_in_deployment(owner):
    dep = deployment(owner)
    text = repr(dep)
    assert "postgresql://" not in text and "redis://" not in text


def test_config_hash_changes_roll_the_template(owner):
    a = deployment(owner, config_hash="one")["spec"]["template"]
    b = deployment(owner, config_hash="two")["spec"]["template"]
    assert a != b


def test_configmap_holds_effective_config(owner):
    spec = spec_of(pool={"policy": "fixed"})
    cm = build_configmap(owner, spec, pool_of(spec))
    assert cm["metadata"]["name"] == "auth-config"
    assert cm["data"]["PHOENIX_MAX_DB_CONNECTIONS"] == cm["data"]["PHOENIX_MIN_DB_CONNECTIONS"] == "20"
    assert "DATABASE_URL" not in cm["data"] and "REDIS_URL" not in cm["data"]


def test_service_pdb_hpa(owner):
    spec = spec_of(authService={"port": 8080, "replicas": {"min": 3, "max": 6}, "targetCPUUtilization": 60})
    svc = build_service(owner, spec)
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "auth"
    pdb = build_pdb(owner)
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": svc["spec"]["selector"]}}
    hpa = build_hpa(owner, spec)["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 6)
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "auth"}
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 60


def test_redis_objects(owner):
    spec = spec_of(redis={"managed": {"maxMemory": "64mb", "evictionPolicy": "volatile-lru"}})
    secret = build_redis_secret(owner, "pw-123")
    assert base64.b64decode(secret["data"]["password"]).decode() == "pw-123"
    assert (
        base64.b64decode(secret["data"]["REDIS_URL"]).decode()
        == "redis://phoenix-auth:pw-123@auth-redis.demo.svc:6379/0"
    )
    dep = build_redis_deployment(owner, spec.redis.managed_or_default, secret_hash="h1")
    pod = dep["spec"]["template"]["spec"]
    assert_restricted(pod)
    script = pod["containers"][0]["command"][-1]
    assert "--maxmemory 64mb" in script and "--maxmemory-policy volatile-lru" in script
    assert "pw-123" not in repr(dep)  # password only via the Secret
    # default user off; the auth pods' user limited to phoenix:* and the service's commands
    assert "user default off resetpass resetkeys resetchannels -@all" in script
    assert "user phoenix-auth on >%s resetkeys ~phoenix:* resetchannels -@all +ping" in script
    assert "requirepass" not in script and "+@all" not in script and "allkeys" not in script
    assert pod["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"] == {
        "name": "auth-redis-auth",
        "key": "password",
    }
    assert build_redis_service(owner)["spec"]["ports"][0]["port"] == 6379
    np = build_redis_network_policy(owner)["spec"]
    assert np["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "redis"
    assert np["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "auth"
    assert np["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 6379}]


def test_migration_job_named_by_what_it_does(owner):
    seed = spec_of()
    again = spec_of(cache={"ttlSeconds": 5})  # unrelated change → same Job
    rollback = spec_of(migrations={"rollback": True})
    new_image = spec_of(authService={"image": "example/phoenix-auth:2"})
    assert migration_job_name(owner, seed) == migration_job_name(owner, again)
    assert migration_job_name(owner, seed) != migration_job_name(owner, rollback)
    assert migration_job_name(owner, seed) != migration_job_name(owner, new_image)
    assert migration_command(seed) == ["phoenix-auth", "migrate", "--index-set", "seed"]
    assert migration_command(rollback)[-1] == "--rollback"
    job = build_migration_job(owner, seed)
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["containers"][0]["image"] == seed.auth_service.image
    assert pod["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "db"
    assert_restricted(pod)


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (None, "Pending"),
        ({}, "Pending"),
        ({"active": 1}, "Running"),
        (
            {
                "conditions": [{"type": "Complete", "status": "True"}],
                "completionTime": "2026-01-01T00:00:00Z",
            },
            "Succeeded",
        ),
        ({"conditions": [{"type": "Failed", "status": "True"}]}, "Failed"),
        ({"conditions": [{"type": "Failed", "status": "False"}], "active": 1}, "Running"),
    ],
)
def test_job_state(status, state):
    assert job_state(None if status is None else {"status": status}) == state


def test_prometheus_rule_thresholds_severity_runbook(owner):
    spec = spec_of(monitoring={"prometheusRule": {"thresholds": {"apiLatencyMs": 250, "errorRate": 0.05}}})
    rules = {r["alert"]: r for r in build_prometheus_rule(owner, spec)["spec"]["groups"][0]["rules"]}
    assert set(rules) == {
        "PhoenixApiLatencyHigh",
        "PhoenixDbQuerySlow",
        "PhoenixCacheHitRatioLow",
        "PhoenixErrorRateHigh",
        "PhoenixDbPoolSaturated",
    }
    assert rules["PhoenixApiLatencyHigh"]["expr"].endswith("> 0.25")
    assert "phoenix_http_request_duration_seconds_bucket" in rules["PhoenixApiLatencyHigh"]["expr"]
    assert rules["PhoenixDbQuerySlow"]["expr"].endswith("> 0.025")
    assert rules["PhoenixCacheHitRatioLow"]["expr"].endswith("< 0.95")
    assert rules["PhoenixErrorRateHigh"]["expr"].endswith("> 0.05")
    for name, r in rules.items():
        assert r["labels"]["severity"] in ("warning", "critical")
        assert r["annotations"]["runbook_url"].endswith("#" + name.lower())
        assert 'namespace="demo",job="auth"' in r["expr"]


def test_alerts_are_switchable(owner):
    spec = spec_of(monitoring={"prometheusRule": {"alerts": {"apiLatency": False, "poolSaturation": False}}})
    names = {r["alert"] for r in rule_groups(owner, spec)[0]["rules"]}
    assert "PhoenixApiLatencyHigh" not in names and "PhoenixDbPoolSaturated" not in names
    assert "PhoenixErrorRateHigh" in names


def test_cache_alert_uses_logical_lookups_and_needs_a_cache(owner):
    def cache_expr(**cache):
        rules = rule_groups(owner, spec_of(cache=cache))[0]["rules"]
        return next((r["expr"] for r in rules if r["alert"] == "PhoenixCacheHitRatioLow"), None)

    both = cache_expr()
    assert 'phoenix_cache_lookups_total{namespace="demo",job="auth",result="hit"}' in both
    assert both.endswith("< 0.95")
    assert cache_expr(enableAuthCache=False) is not None
    assert cache_expr(enableAuthCache=False, enableQueryCache=False) is None


def test_service_monitor(owner):
    sm = build_service_monitor(owner, spec_of(monitoring={"serviceMonitor": {"interval": "15s"}}))
    assert sm["spec"]["endpoints"] == [{"port": "admin", "path": "/metrics", "interval": "15s"}]
    assert sm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "admin"


def _selects(selector: dict, obj: dict) -> bool:
    return selector.items() <= obj["metadata"]["labels"].items()


def test_metrics_are_scraped_on_the_admin_port_through_the_admin_service_only(owner):
    """The auth service answers /metrics (and the admin API) on PHOENIX_ADMIN_PORT only: the
    ServiceMonitor and the prometheus.io annotations must point there, and the public Service must
    never carry that port."""
    spec = spec_of(authService={"port": 8080, "adminPort": 9090})
    public, admin = build_service(owner, spec), build_admin_service(owner, spec)
    assert [p["name"] for p in public["spec"]["ports"]] == ["http"]
    assert admin["metadata"]["name"] == "auth-admin"
    assert admin["spec"]["type"] == "ClusterIP"
    assert admin["spec"]["ports"] == [
        {"name": "admin", "port": 9090, "targetPort": "admin", "protocol": "TCP"}
    ]
    assert admin["spec"]["selector"] == public["spec"]["selector"]  # the same auth pods
    sm = build_service_monitor(owner, spec)["spec"]
    assert _selects(sm["selector"]["matchLabels"], admin)
    assert not _selects(sm["selector"]["matchLabels"], public)
    assert sm["endpoints"][0]["port"] == "admin"
    template = deployment(owner, spec)["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert (annotations["prometheus.io/port"], annotations["prometheus.io/path"]) == ("9090", "/metrics")
    container = template["spec"]["containers"][0]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8080, "admin": 9090}
    assert env_of(container)["PHOENIX_ADMIN_PORT"] == "9090"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == "http"


SECRET_ENV = {"name": "APP_API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "app", "key": "admin"}}}


def test_extra_env_from_a_secret_is_a_reference_and_never_in_the_configmap(owner):
    spec = spec_of(authService={"extraEnv": [SECRET_ENV, {"name": "PHOENIX_LOG_LEVEL", "value": "DEBUG"}]})
    env = env_of(deployment(owner, spec)["spec"]["template"]["spec"]["containers"][0])
    assert env["APP_API_TOKEN"] == {"secretKeyRef": {"name": "app", "key": "admin"}}
    assert env["PHOENIX_LOG_LEVEL"] == "DEBUG"
    data = build_configmap(owner, spec, pool_of(spec))["data"]
    assert "APP_API_TOKEN" not in data  # a Secret's value is never copied into a ConfigMap
    assert data["PHOENIX_LOG_LEVEL"] == "DEBUG"


def test_migration_job_connects_with_the_migration_secret_when_given(owner):
    plain = spec_of()
    owned = spec_of(
        database={
            "secretRef": {"name": "db"},
            "migrationSecretRef": {"name": "db-owner"},
            "connectionBudget": 100,
        }
    )
    env = build_migration_job(owner, owned)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [
        {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db-owner", "key": "DATABASE_URL"}}}
    ]
    # the auth pods keep the runtime role
    dep_env = env_of(deployment(owner, owned)["spec"]["template"]["spec"]["containers"][0])
    assert dep_env["DATABASE_URL"] == {"secretKeyRef": {"name": "db", "key": "DATABASE_URL"}}
    # setting it runs a new Job (the old one may have failed for lack of privileges); a spec
    # without it keeps the name it had before the field existed (no migration re-run on upgrade)
    assert migration_job_name(owner, owned) != migration_job_name(owner, plain)
    m = plain.migrations
    assert migration_hash(plain) == stable_hash(m.index_set, m.rollback, plain.auth_service.image, length=10)


def test_generated_secrets_carry_the_watched_label(owner):
    labels = build_redis_secret(owner, "pw")["metadata"]["labels"]
    assert labels[LABEL_WATCHED_SECRET] == "true"


def test_auth_pods_get_the_admin_token_and_signing_key_from_a_secret_never_as_values(owner):
    from phoenix_operator.builders.keys import build_keys_secret

    env = env_of(deployment(owner)["spec"]["template"]["spec"]["containers"][0])
    for name in ("PHOENIX_ADMIN_TOKEN", "PHOENIX_CACHE_SIGNING_KEY"):
        assert env[name] == {"secretKeyRef": {"name": "auth-phoenix-keys", "key": name}}
    own = spec_of(authService={"cacheSigningKeySecretRef": {"name": "team-keys", "key": "l2"}})
    env = env_of(deployment(owner, own)["spec"]["template"]["spec"]["containers"][0])
    assert env["PHOENIX_CACHE_SIGNING_KEY"] == {"secretKeyRef": {"name": "team-keys", "key": "l2"}}
    assert env["PHOENIX_ADMIN_TOKEN"]["secretKeyRef"]["name"] == "auth-phoenix-keys"
    data = build_configmap(owner, own, pool_of(own))["data"]
    assert not {"PHOENIX_ADMIN_TOKEN", "PHOENIX_CACHE_SIGNING_KEY"} & set(data)
    secret = build_keys_secret(owner, {"PHOENIX_ADMIN_TOKEN": "v" * 64})
    assert secret["metadata"]["name"] == "auth-phoenix-keys"
    assert secret["metadata"]["labels"][LABEL_WATCHED_SECRET] == "true"
    assert secret["metadata"]["ownerReferences"] == [owner_reference(owner)]
    assert base64.b64decode(secret["data"]["PHOENIX_ADMIN_TOKEN"]).decode() == "v" * 64


def test_the_opt_in_network_policy_keeps_the_admin_port_to_the_listed_peers(owner):
    from phoenix_operator.builders.service import build_auth_network_policy

    prometheus = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }
    spec = spec_of(authService={"networkPolicy": {"enabled": True, "adminFrom": [prometheus]}})
    np = build_auth_network_policy(owner, spec)
    assert np["metadata"]["name"] == "auth" and np["metadata"]["ownerReferences"] == [owner_reference(owner)]
    assert np["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "auth"
    assert np["spec"]["policyTypes"] == ["Ingress"]
    public, admin = np["spec"]["ingress"]
    assert public == {"ports": [{"protocol": "TCP", "port": 3007}]}  # no `from`: every source
    assert admin == {"ports": [{"protocol": "TCP", "port": 3008}], "from": [prometheus]}
    # nobody listed: no rule for the admin port at all (a rule without `from` admits every source)
    closed = build_auth_network_policy(owner, spec_of(authService={"networkPolicy": {"enabled": True}}))
    assert closed["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": 3007}]}]
