"""The operator's side of the security review on a real API server, with the chart's ServiceAccount:

- an image outside the operator's allow-list: Ready=False ImageNotAllowed, and nothing is created;
- extraEnv from a Secret: an env reference on the Deployment, in no ConfigMap, status or event; the
  operator labels the Secret for its label-selected Secret watch, and a change of it rolls the pods
  within seconds (the watch, not the 5-minute resync);
- a migration Job that connects with the owner role's Secret (spec.database.migrationSecretRef),
  held with a condition while that Secret is missing;
- trustedProxies unset: an advisory condition and one Warning event, never a failed Ready.

kwok makes pods Ready and completes Jobs; the operator runs locally as the chart's ServiceAccount.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_kube import ControlPlane, OperatorProcess, wait_until

READY_TIMEOUT = 90
WATCHED = "auth.phoenix.dev/watched"
TOKEN = "planted-admin-token-0123456789abcdef0123456789"


@pytest.fixture(scope="module")
def module_operator(
    operator_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """Default resync (300 s): anything that happens within seconds came from a watch event."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    op = OperatorProcess(operator_kubeconfig, log, ["--priority=100"]).start()
    try:
        wait_until(op.healthy, 60, "the operator's liveness endpoint")
        yield op
    finally:
        op.stop()
        print(f"\noperator log: {log}")


def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "Opaque",
        "stringData": data,
    }


def phoenixauth(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"database": {"secretRef": {"name": "db"}, "connectionBudget": 50}}
    for key, value in spec.items():
        body[key] = {**body.get(key, {}), **value}
    return {
        "apiVersion": "auth.phoenix.dev/v1alpha1",
        "kind": "PhoenixAuth",
        "metadata": {"name": name},
        "spec": body,
    }


def condition(cp: ControlPlane, ns: str, name: str, ctype: str) -> dict[str, Any]:
    return cp.condition(cp.get("pxa", name, ns), ctype) or {}


def wait_condition(
    cp: ControlPlane, ns: str, name: str, ctype: str, status: str, reason: str | None = None
) -> dict[str, Any]:
    def seen() -> dict[str, Any] | None:
        cond = condition(cp, ns, name, ctype)
        ok = cond.get("status") == status and (reason is None or cond.get("reason") == reason)
        return cond if ok else None

    return wait_until(seen, READY_TIMEOUT, f"{ns}/{name} {ctype}={status} {reason or ''}")


def warning_reasons(cp: ControlPlane, ns: str, name: str) -> list[str]:
    events = cp.get("events", namespace=ns)["items"]
    return [
        e["reason"]
        for e in events
        if e.get("type") == "Warning" and e.get("involvedObject", {}).get("name") == name
    ]


def test_an_image_outside_the_allow_list_deploys_nothing(
    control_plane: ControlPlane, module_operator: OperatorProcess, namespace: str
) -> None:
    cp, ns = control_plane, namespace
    cp.apply(secret("db", {"DATABASE_URL": "postgresql://phoenix:pw@db.example:5432/phoenix"}), namespace=ns)
    cp.apply(phoenixauth("evil", authService={"image": "docker.io/attacker/phoenix-auth:1"}), namespace=ns)
    ready = wait_condition(cp, ns, "evil", "Ready", "False", "ImageNotAllowed")
    assert ready["message"].startswith("spec.authService.image 'docker.io/attacker/phoenix-auth:1'")
    assert "ghcr.io/phoenix-dev/" in ready["message"]  # what is allowed, so the user can fix it
    assert condition(cp, ns, "evil", "Degraded")["status"] == "True"
    for kind in ("deployments", "jobs", "configmaps", "services"):
        names = [i["metadata"]["name"] for i in cp.get(kind, namespace=ns)["items"]]
        assert not [n for n in names if n.startswith("evil")], f"{kind} created for a refused image: {names}"
    assert "ImageNotAllowed" in cp.kubectl("describe", "pxa", "evil", "-n", ns).stdout
    wait_until(lambda: "ImageNotAllowed" in warning_reasons(cp, ns, "evil"), 30, "a Warning event")
    # The Secret was never read or labelled: a refused spec touches nothing.
    assert WATCHED not in (cp.get("secret", "db", ns)["metadata"].get("labels") or {})


def test_extra_env_from_a_secret_is_a_reference_watched_through_its_label(
    control_plane: ControlPlane, module_operator: OperatorProcess, namespace: str
) -> None:
    cp, ns = control_plane, namespace
    cp.apply(secret("db", {"DATABASE_URL": "postgresql://phoenix:pw@db.example:5432/phoenix"}), namespace=ns)
    cp.apply(secret("app", {"admin": TOKEN}), namespace=ns)
    cp.apply(secret("unrelated", {"value": "unrelated"}), namespace=ns)
    env = [
        {"name": "APP_API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "app", "key": "admin"}}},
        {"name": "PHOENIX_LOG_LEVEL", "value": "INFO"},
    ]
    cp.apply(phoenixauth("phoenix", authService={"extraEnv": env}), namespace=ns)
    wait_condition(cp, ns, "phoenix", "Ready", "True")

    container = cp.get("deployment", "phoenix", ns)["spec"]["template"]["spec"]["containers"][0]
    by_name = {e["name"]: e for e in container["env"]}
    assert by_name["APP_API_TOKEN"] == env[0]
    assert by_name["PHOENIX_LOG_LEVEL"]["value"] == "INFO"
    config = cp.get("configmap", "phoenix-config", ns)["data"]
    assert "APP_API_TOKEN" not in config and config["PHOENIX_LOG_LEVEL"] == "INFO"
    for kind in ("configmaps", "deployments", "events", "pxa"):
        assert TOKEN not in json.dumps(cp.get(kind, namespace=ns)), f"the token is in {kind}"
    # Referenced Secrets and the generated one carry the watch label; other Secrets are left alone.
    for name in ("db", "app", "phoenix-redis-auth"):
        assert cp.get("secret", name, ns)["metadata"]["labels"][WATCHED] == "true", name
    assert WATCHED not in (cp.get("secret", "unrelated", ns)["metadata"].get("labels") or {})

    def config_hash() -> str:
        meta = cp.get("deployment", "phoenix", ns)["spec"]["template"]["metadata"]
        return str(meta["annotations"]["auth.phoenix.dev/config-hash"])

    before = config_hash()
    rotated = base64.b64encode(("rotated-" + TOKEN).encode()).decode()
    cp.kubectl(
        "patch", "secret", "app", "-n", ns, "--type=merge", "-p", json.dumps({"data": {"admin": rotated}})
    )
    wait_until(lambda: config_hash() != before, 30, "the pods to roll after the referenced Secret changed")


def test_the_migration_job_connects_as_the_owner_role(
    control_plane: ControlPlane, module_operator: OperatorProcess, namespace: str
) -> None:
    cp, ns = control_plane, namespace
    cp.apply(
        secret("db", {"DATABASE_URL": "postgresql://phoenix_runtime:pw@db.example:5432/phoenix"}),
        namespace=ns,
    )
    spec = {"migrationSecretRef": {"name": "db-owner"}}
    cp.apply(phoenixauth("phoenix", database=spec), namespace=ns)
    held = wait_condition(cp, ns, "phoenix", "MigrationsComplete", "False", "MigrationSecretMissing")
    assert (
        f"Secret {ns}/db-owner with key DATABASE_URL not found (spec.database.migrationSecretRef)"
        in (held["message"])
    )
    assert not cp.get("jobs", namespace=ns)["items"], "a Job was created without its Secret"
    cp.apply(
        secret("db-owner", {"DATABASE_URL": "postgresql://phoenix_owner:pw@db.example:5432/phoenix"}),
        namespace=ns,
    )
    wait_condition(cp, ns, "phoenix", "Ready", "True")
    (job,) = cp.get("jobs", namespace=ns)["items"]
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [
        {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db-owner", "key": "DATABASE_URL"}}}
    ]
    auth_env = cp.get("deployment", "phoenix", ns)["spec"]["template"]["spec"]["containers"][0]["env"]
    db_env = next(e for e in auth_env if e["name"] == "DATABASE_URL")
    assert db_env["valueFrom"]["secretKeyRef"]["name"] == "db"  # the auth pods keep the runtime role


def test_unset_trusted_proxies_warn_without_failing_ready(
    control_plane: ControlPlane, module_operator: OperatorProcess, namespace: str
) -> None:
    cp, ns = control_plane, namespace
    cp.apply(secret("db", {"DATABASE_URL": "postgresql://phoenix:pw@db.example:5432/phoenix"}), namespace=ns)
    cp.apply(phoenixauth("phoenix"), namespace=ns)
    wait_condition(cp, ns, "phoenix", "Ready", "True")
    unset = condition(cp, ns, "phoenix", "TrustedProxiesConfigured")
    assert unset["status"] == "False" and unset["reason"] == "TrustedProxiesUnset"
    assert "spec.authService.trustedProxies" in unset["message"]
    wait_until(lambda: "TrustedProxiesUnset" in warning_reasons(cp, ns, "phoenix"), 30, "a Warning event")
    cp.apply(phoenixauth("phoenix", authService={"trustedProxies": ["10.244.0.0/16"]}), namespace=ns)
    wait_condition(cp, ns, "phoenix", "TrustedProxiesConfigured", "True", "TrustedProxiesSet")
    env = cp.get("deployment", "phoenix", ns)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "PHOENIX_TRUSTED_PROXIES", "value": "10.244.0.0/16"} in env


KEY_ENVS = ("PHOENIX_ADMIN_TOKEN", "PHOENIX_CACHE_SIGNING_KEY")


def test_the_admin_token_and_signing_key_are_generated_once_and_kept(
    control_plane: ControlPlane, module_operator: OperatorProcess, namespace: str
) -> None:
    """Finding 3/4 (operator part): without a signing key the service's L2 cache is off, without an
    admin token its admin API is; the operator generates both once into `<name>-phoenix-keys`
    (owned, watched), hands them to the pods by reference, keeps them across reconciles (a
    spec change, a drifted child, the operator restarted) and writes them nowhere else."""
    cp, ns = control_plane, namespace
    cp.apply(secret("db", {"DATABASE_URL": "postgresql://phoenix:pw@db.example:5432/phoenix"}), namespace=ns)
    cp.apply(phoenixauth("phoenix"), namespace=ns)
    wait_condition(cp, ns, "phoenix", "Ready", "True")
    keys = cp.get("secret", "phoenix-phoenix-keys", ns)
    owner = cp.get("pxa", "phoenix", ns)["metadata"]["uid"]
    assert [r["uid"] for r in keys["metadata"]["ownerReferences"]] == [owner]
    assert keys["metadata"]["labels"][WATCHED] == "true"
    values = {k: base64.b64decode(keys["data"][k]).decode() for k in KEY_ENVS}
    assert all(len(v.encode()) >= 32 for v in values.values())
    container = cp.get("deployment", "phoenix", ns)["spec"]["template"]["spec"]["containers"][0]
    by_name = {e["name"]: e for e in container["env"]}
    for k in KEY_ENVS:
        assert by_name[k] == {
            "name": k,
            "valueFrom": {"secretKeyRef": {"name": "phoenix-phoenix-keys", "key": k}},
        }

    # reconciles of every kind: a spec change, a deleted child put back
    cp.apply(phoenixauth("phoenix", authService={"trustedProxies": ["10.244.0.0/16"]}), namespace=ns)
    wait_condition(cp, ns, "phoenix", "TrustedProxiesConfigured", "True")
    cp.kubectl("delete", "configmap", "phoenix-config", "-n", ns)
    wait_until(lambda: cp.exists("configmap", "phoenix-config", ns), 30, "the ConfigMap put back")
    again = cp.get("secret", "phoenix-phoenix-keys", ns)
    assert again["metadata"]["uid"] == keys["metadata"]["uid"]
    assert {k: base64.b64decode(again["data"][k]).decode() for k in KEY_ENVS} == values

    # nowhere else: ConfigMaps, Deployments, the PhoenixAuth (status), events, describe, operator log
    text = json.dumps([cp.get(kind, namespace=ns) for kind in ("configmaps", "deployments", "events", "pxa")])
    text += cp.kubectl("describe", "pxa", "phoenix", "-n", ns).stdout + module_operator.logs()
    for value in values.values():
        assert value not in text


def test_the_user_s_own_admin_token_secret_is_used_and_a_missing_one_is_named(
    control_plane: ControlPlane, module_operator: OperatorProcess, namespace: str
) -> None:
    cp, ns = control_plane, namespace
    cp.apply(secret("db", {"DATABASE_URL": "postgresql://phoenix:pw@db.example:5432/phoenix"}), namespace=ns)
    cp.apply(
        phoenixauth("phoenix", authService={"adminTokenSecretRef": {"name": "team-admin"}}), namespace=ns
    )
    missing = wait_condition(cp, ns, "phoenix", "Ready", "False", "AdminTokenSecretMissing")
    where = "(spec.authService.adminTokenSecretRef)"
    assert f"Secret {ns}/team-admin with key PHOENIX_ADMIN_TOKEN not found {where}" in missing["message"]
    cp.apply(secret("team-admin", {"PHOENIX_ADMIN_TOKEN": "too-short"}), namespace=ns)
    short = wait_condition(cp, ns, "phoenix", "Ready", "False", "AdminTokenTooShort")
    assert "holds 9 bytes" in short["message"] and "too-short" not in short["message"]
    cp.apply(secret("team-admin", {"PHOENIX_ADMIN_TOKEN": TOKEN}), namespace=ns)
    wait_condition(cp, ns, "phoenix", "Ready", "True")
    env = cp.get("deployment", "phoenix", ns)["spec"]["template"]["spec"]["containers"][0]["env"]
    by_name = {e["name"]: e.get("valueFrom") for e in env}
    assert by_name["PHOENIX_ADMIN_TOKEN"] == {
        "secretKeyRef": {"name": "team-admin", "key": "PHOENIX_ADMIN_TOKEN"}
    }
    assert by_name["PHOENIX_CACHE_SIGNING_KEY"]["secretKeyRef"]["name"] == "phoenix-phoenix-keys"
    generated = cp.get("secret", "phoenix-phoenix-keys", ns)["data"]
    assert set(generated) == {"PHOENIX_CACHE_SIGNING_KEY"}
    assert TOKEN not in json.dumps([cp.get(k, namespace=ns) for k in ("configmaps", "events", "pxa")])


def test_the_opt_in_network_policy_keeps_the_admin_port_to_prometheus(
    control_plane: ControlPlane, module_operator: OperatorProcess, namespace: str
) -> None:
    """Finding 13 (operator part): with networkPolicy on, a NetworkPolicy admits the public port from
    anywhere and the admin port from the listed peers only; turned off, it is gone."""
    cp, ns = control_plane, namespace
    cp.apply(secret("db", {"DATABASE_URL": "postgresql://phoenix:pw@db.example:5432/phoenix"}), namespace=ns)
    prometheus = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }
    on = {"networkPolicy": {"enabled": True, "adminFrom": [prometheus]}}
    cp.apply(phoenixauth("phoenix", authService=on), namespace=ns)
    wait_condition(cp, ns, "phoenix", "Ready", "True")
    policy = cp.get("networkpolicy", "phoenix", ns)["spec"]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "auth"
    assert policy["ingress"] == [
        {"ports": [{"protocol": "TCP", "port": 3007}]},
        {"ports": [{"protocol": "TCP", "port": 3008}], "from": [prometheus]},
    ]
    cp.apply(phoenixauth("phoenix"), namespace=ns)
    wait_until(lambda: not cp.exists("networkpolicy", "phoenix", ns), 30, "the auth NetworkPolicy removed")
    assert cp.exists("networkpolicy", "phoenix-redis", ns)


def test_external_rediss_gets_its_ca_and_a_plain_url_with_a_ca_is_named(
    control_plane: ControlPlane, module_operator: OperatorProcess, namespace: str
) -> None:
    cp, ns = control_plane, namespace
    cp.apply(secret("db", {"DATABASE_URL": "postgresql://phoenix:pw@db.example:5432/phoenix"}), namespace=ns)
    cp.apply(secret("redis", {"REDIS_URL": "redis://phoenix-auth:pw@redis.example:6379/0"}), namespace=ns)
    cp.apply(
        secret("redis-ca", {"ca.crt": "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"}),
        namespace=ns,
    )
    external = {"secretRef": {"name": "redis"}, "caSecretRef": {"name": "redis-ca"}}
    body = phoenixauth("phoenix")
    body["spec"]["redis"] = {"mode": "external", "external": external}
    cp.apply(body, namespace=ns)
    plain = wait_condition(cp, ns, "phoenix", "RedisReady", "False", "RedisURLNotTLS")
    assert "does not start with rediss://" in plain["message"] and ":pw@" not in plain["message"]
    cp.apply(secret("redis", {"REDIS_URL": "rediss://phoenix-auth:pw@redis.example:6380/0"}), namespace=ns)
    wait_condition(cp, ns, "phoenix", "Ready", "True")  # the watched Secret's change, not the resync
    pod = cp.get("deployment", "phoenix", ns)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert {"name": "PHOENIX_REDIS_CA_FILE", "value": "/etc/phoenix/redis-ca/ca.crt"} in container["env"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "redis-ca")
    assert (mount["mountPath"], mount.get("readOnly")) == ("/etc/phoenix/redis-ca", True)
    volume = next(v for v in pod["volumes"] if v["name"] == "redis-ca")
    assert volume["secret"]["secretName"] == "redis-ca"
