"""The auth service Deployment: restricted security context, probes, pool-sized env, config hash."""

from __future__ import annotations

from typing import Any

from phoenix_operator.builders.common import (
    ANNOTATION_CONFIG_HASH,
    Owner,
    container_security_context,
    labels,
    metadata,
    pod_security_context,
    selector,
)
from phoenix_operator.builders.configmap import REDIS_CA_DIR, auth_env
from phoenix_operator.builders.keys import key_env_refs
from phoenix_operator.pool_sizing import PoolSize
from phoenix_operator.spec import PhoenixAuthSpec

# Seconds a terminating auth pod keeps serving before SIGTERM (kube-proxy's endpoint update lags the
# deletion by ~1 s here; a busy cluster's by more).
PRE_STOP_SECONDS = 5


def secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def build_deployment(
    owner: Owner,
    spec: PhoenixAuthSpec,
    pool: PoolSize,
    *,
    redis_secret: tuple[str, str],
    config_hash: str,
    replicas: int,
) -> dict[str, Any]:
    """Build the Deployment.

    `replicas` is the current count clamped to [min, max] (the reconciler reads it) so the
    operator never fights the HPA, which owns scaling between min and max.
    `redis_secret` is (Secret name, key) holding REDIS_URL (managed or external).
    `config_hash` changes when config or a referenced Secret changes, and rolls the pods.
    """
    svc = spec.auth_service
    db = spec.database.secret_ref
    env: list[dict[str, Any]] = [
        secret_env("DATABASE_URL", db.name, db.key),
        secret_env("REDIS_URL", redis_secret[0], redis_secret[1]),
    ]
    # The admin token and the L2 signing key: references to a Secret, never values.
    env += [secret_env(name, secret, key) for name, (secret, key) in key_env_refs(owner, spec).items()]
    env += [{"name": k, "value": v} for k, v in auth_env(spec, pool).items()]
    for e in svc.extra_env:  # a Secret's value stays a reference: never literal in the pod spec
        ref = e.secret_ref
        env.append(secret_env(e.name, ref.name, ref.key) if ref else {"name": e.name, "value": e.value or ""})
    container: dict[str, Any] = {
        "name": "auth",
        "image": svc.image,
        "imagePullPolicy": svc.image_pull_policy,
        "command": ["phoenix-auth", "serve"],
        # admin: the admin API and /metrics (the public port answers 404 there); probes stay on http.
        "ports": [
            {"name": "http", "containerPort": svc.port, "protocol": "TCP"},
            {"name": "admin", "containerPort": svc.admin_port, "protocol": "TCP"},
        ],
        "env": env,
        "resources": svc.resources.to_k8s(),
        "securityContext": container_security_context(),
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "failureThreshold": 2,
        },
        "startupProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 30,
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - read-only root FS needs a tmp
        # A terminating pod leaves the Service's endpoints at once, but kube-proxy on every node takes
        # a moment to stop sending it NEW connections, and open keep-alive connections keep coming:
        # `phoenix-auth drain` keeps serving for PRE_STOP_SECONDS while every response asks its client
        # to reconnect (elsewhere), then SIGTERM ends in-flight requests and the process.
        "lifecycle": {
            "preStop": {"exec": {"command": ["phoenix-auth", "drain", "--seconds", str(PRE_STOP_SECONDS)]}}
        },
    }
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}]
    ca = spec.redis.external.ca_secret_ref if spec.redis.external is not None else None
    if ca is not None:  # the CA of a rediss:// server: a read-only file, PHOENIX_REDIS_CA_FILE
        items = [{"key": ca.key, "path": "ca.crt"}]
        volumes.append({"name": "redis-ca", "secret": {"secretName": ca.name, "items": items}})
        container["volumeMounts"].append({"name": "redis-ca", "mountPath": REDIS_CA_DIR, "readOnly": True})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(owner, owner.auth_name, "auth"),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector(owner, "auth")},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": labels(owner, "auth"),
                    "annotations": {
                        ANNOTATION_CONFIG_HASH: config_hash,
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(svc.admin_port),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(),
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }
