"""The auth service's non-secret configuration (the seed's PHOENIX_* settings) as a ConfigMap.

The same values are set as literal env on the Deployment (so `kubectl describe` shows them); the
ConfigMap is the effective configuration a human or tool can read in one place, and its digest
is part of the pod template's config-hash annotation. Only literal values go in: extraEnv entries
that come from a Secret (`valueFrom.secretKeyRef`) are env references on the Deployment and never
copied here (ConfigMaps are readable by far more people and tools than Secrets).
"""

from __future__ import annotations

from typing import Any

from phoenix_operator.builders.common import Owner, metadata
from phoenix_operator.pool_sizing import PoolSize
from phoenix_operator.spec import PhoenixAuthSpec

REDIS_CA_DIR = "/etc/phoenix/redis-ca"
REDIS_CA_FILE = f"{REDIS_CA_DIR}/ca.crt"


def _flag(value: bool) -> str:
    return "true" if value else "false"


def auth_env(spec: PhoenixAuthSpec, pool: PoolSize) -> dict[str, str]:
    """PHOENIX_* env of the auth service, named as its settings read them."""
    svc = spec.auth_service
    env = {
        "PHOENIX_HOST": "0.0.0.0",  # noqa: S104 - a pod must listen on its pod IP
        "PHOENIX_PORT": str(svc.port),
        "PHOENIX_ADMIN_PORT": str(svc.admin_port),
        "PHOENIX_WORKERS": str(svc.workers),
        "PHOENIX_MAX_DB_CONNECTIONS": str(pool.per_process),
        "PHOENIX_MIN_DB_CONNECTIONS": str(pool.min_per_process),
        "PHOENIX_CACHE_TTL": str(spec.cache.ttl_seconds),
        "PHOENIX_L1_MAX_ENTRIES": str(spec.cache.l1_max_entries),
        "PHOENIX_ENABLE_AUTH_CACHE": _flag(spec.cache.enable_auth_cache),
        "PHOENIX_ENABLE_QUERY_CACHE": _flag(spec.cache.enable_query_cache),
        "PHOENIX_ENABLE_MONITORING": _flag(spec.monitoring.enabled),
        "PHOENIX_TRUSTED_PROXIES": ",".join(svc.trusted_proxies),
    }
    if spec.redis.external is not None and spec.redis.external.ca_secret_ref is not None:
        env["PHOENIX_REDIS_CA_FILE"] = REDIS_CA_FILE
    return env


def build_configmap(owner: Owner, spec: PhoenixAuthSpec, pool: PoolSize) -> dict[str, Any]:
    data = auth_env(spec, pool)
    for env in spec.auth_service.extra_env:
        if env.value_from is None:
            data[env.name] = env.value or ""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(owner, owner.config_name, "auth"),
        "data": data,
    }
