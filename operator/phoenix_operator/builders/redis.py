"""Managed Redis: password Secret, Deployment, Service and a NetworkPolicy letting only auth pods in.

The password is generated once (by the reconciler, which keeps an existing one) and only ever
lives in the Secret: Redis reads its config from stdin, so it is not in the pod spec or in the
process arguments. Redis here is a cache (no persistence, eviction on), so an emptyDir is enough
and a restart loses only warm entries — PostgreSQL stays the truth.

Who may do what (finding 3 of the security review): the `default` user is off, and the auth pods
connect as the ACL user `phoenix-auth`, limited to Phoenix's keys (`phoenix:*`) and the commands
the service uses — the rule of docs/auth-service.md, which the auth service publishes as
`redislink.acl_rule()` (a unit test holds this copy equal to it; the operator's image does not
carry the auth service). A stolen REDIS_URL then cannot FLUSHALL, CONFIG SET, read other keys,
or run arbitrary Lua; the L2 values it can reach are signed (PHOENIX_CACHE_SIGNING_KEY).
"""

from __future__ import annotations

import base64
from typing import Any

from phoenix_operator.builders.common import (
    LABEL_WATCHED_SECRET,
    WATCHED_SECRET,
    Owner,
    container_security_context,
    labels,
    metadata,
    pod_security_context,
    selector,
)
from phoenix_operator.spec import ManagedRedis

REDIS_PORT = 6379
PASSWORD_KEY = "password"  # noqa: S105 - a key name, not a password
URL_KEY = "REDIS_URL"
REDIS_UID = 999  # the official image's redis user
ACL_USER = "phoenix-auth"
# The auth service's ACL rule (phoenix_auth.redislink.acl_rule(), docs/auth-service.md "ACL").
SERVICE_ACL_RULE = (
    "resetkeys ~phoenix:* resetchannels -@all +ping +client|setname +select +get +set +unlink +scan "
    "+evalsha +script|load +incr +incrby +decrby +expire +pttl +del +hget +hset +hdel +hlen +hgetall"
)


def redis_url(owner: Owner, password: str) -> str:
    host = f"{owner.redis_name}.{owner.namespace}.svc"
    return f"redis://{ACL_USER}:{password}@{host}:{REDIS_PORT}/0"


def build_redis_secret(owner: Owner, password: str) -> dict[str, Any]:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    meta = metadata(owner, owner.redis_secret_name, "redis")
    meta["labels"][LABEL_WATCHED_SECRET] = WATCHED_SECRET  # the operator's Secret watch sees it
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "Opaque",
        "data": {PASSWORD_KEY: b64(password), URL_KEY: b64(redis_url(owner, password))},
    }


def redis_config_lines() -> str:
    """The ACL part of the config redis-server reads on stdin (printf format, `%s` = password):
    `default` off with no password and no rights, `phoenix-auth` with the service's rule."""
    return (
        "user default off resetpass resetkeys resetchannels -@all\\n"
        f"user {ACL_USER} on >%s {SERVICE_ACL_RULE}\\n"
    )


def redis_command(managed: ManagedRedis) -> list[str]:
    """Start redis-server with config from stdin so the password never appears in argv."""
    script = (
        f'printf "{redis_config_lines()}" "$REDIS_PASSWORD" | exec redis-server - '
        f"--port {REDIS_PORT} --maxmemory {managed.max_memory} --maxmemory-policy {managed.eviction_policy} "
        '--save "" --appendonly no --protected-mode yes --dir /data'
    )
    return ["sh", "-c", script]


def build_redis_deployment(owner: Owner, managed: ManagedRedis, *, secret_hash: str) -> dict[str, Any]:
    container = {
        "name": "redis",
        "image": managed.image,
        "command": redis_command(managed),
        "ports": [{"name": "redis", "containerPort": REDIS_PORT, "protocol": "TCP"}],
        "env": [
            {
                "name": "REDIS_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": owner.redis_secret_name, "key": PASSWORD_KEY}},
            }
        ],
        "resources": managed.resources.to_k8s(),
        "securityContext": container_security_context(),
        "readinessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 10, "failureThreshold": 3},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(owner, owner.redis_name, "redis"),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector(owner, "redis")},
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {
                    "labels": labels(owner, "redis"),
                    "annotations": {"auth.phoenix.dev/secret-hash": secret_hash},
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(REDIS_UID),
                    "containers": [container],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
    }


def build_redis_service(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, owner.redis_name, "redis"),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(owner, "redis"),
            "ports": [{"name": "redis", "port": REDIS_PORT, "targetPort": "redis", "protocol": "TCP"}],
        },
    }


def build_redis_network_policy(owner: Owner) -> dict[str, Any]:
    """Only this PhoenixAuth's auth pods may reach its Redis, and only on the Redis port."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(owner, owner.redis_name, "redis"),
        "spec": {
            "podSelector": {"matchLabels": selector(owner, "redis")},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": selector(owner, "auth")}}],
                    "ports": [{"protocol": "TCP", "port": REDIS_PORT}],
                }
            ],
        },
    }
