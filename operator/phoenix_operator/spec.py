"""The typed PhoenixAuth spec: one object the reconciler and every builder receive.

The CRD's OpenAPI schema and CEL rules reject most bad specs at apply time; this module
is the second line of defence (old objects stored before a schema change, objects applied
with validation off, tests). Defaults mirror the CRD's so a spec with fields left out means
the same thing here as on the API server. A parse failure becomes `SpecInvalid`, which
names the field so the status condition can tell the user what to fix.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from phoenix_operator import __version__
from phoenix_operator.errors import SpecInvalid
from phoenix_operator.images import PROJECT_IMAGE_PREFIX

DEFAULT_AUTH_IMAGE = f"{PROJECT_IMAGE_PREFIX}phoenix-auth:{__version__}"
DEFAULT_REDIS_IMAGE = f"{PROJECT_IMAGE_PREFIX}phoenix-redis:{__version__}"

# Env names the operator sets itself; extraEnv may not override them (CEL rejects it too).
RESERVED_ENV = frozenset(
    {
        "DATABASE_URL",
        "REDIS_URL",
        "PHOENIX_MAX_DB_CONNECTIONS",
        "PHOENIX_MIN_DB_CONNECTIONS",
        "PHOENIX_CACHE_TTL",
        "PHOENIX_ENABLE_AUTH_CACHE",
        "PHOENIX_ENABLE_QUERY_CACHE",
        "PHOENIX_ENABLE_MONITORING",
        "PHOENIX_L1_MAX_ENTRIES",
        "PHOENIX_HOST",
        "PHOENIX_PORT",
        "PHOENIX_WORKERS",
        "PHOENIX_TRUSTED_PROXIES",
        "PHOENIX_ADMIN_TOKEN",
        "PHOENIX_CACHE_SIGNING_KEY",
        "PHOENIX_ADMIN_PORT",
        "PHOENIX_REDIS_CA_FILE",
    }
)

# Where to set the reserved names that have a spec field of their own (the extraEnv error says so).
RESERVED_ENV_HINT = {
    "PHOENIX_ADMIN_TOKEN": "name your Secret in spec.authService.adminTokenSecretRef",
    "PHOENIX_CACHE_SIGNING_KEY": "name your Secret in spec.authService.cacheSigningKeySecretRef",
    "PHOENIX_ADMIN_PORT": "set spec.authService.adminPort",
    "PHOENIX_REDIS_CA_FILE": "name the CA's Secret in spec.redis.external.caSecretRef",
}


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore")


class Resources(_Model):
    requests: dict[str, str | int] = Field(default_factory=dict)
    limits: dict[str, str | int] = Field(default_factory=dict)

    def to_k8s(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        if self.requests:
            out["requests"] = {k: str(v) for k, v in self.requests.items()}
        if self.limits:
            out["limits"] = {k: str(v) for k, v in self.limits.items()}
        return out


def _auth_resources() -> Resources:
    return Resources(requests={"cpu": "1", "memory": "256Mi"}, limits={"memory": "512Mi"})


def _redis_resources() -> Resources:
    return Resources(requests={"cpu": "50m", "memory": "64Mi"}, limits={"memory": "256Mi"})


class Replicas(_Model):
    min: int = Field(default=2, ge=1, le=100)
    max: int = Field(default=4, ge=1, le=100)

    @model_validator(mode="after")
    def _order(self) -> Replicas:
        if self.min > self.max:
            raise ValueError(f"replicas.min ({self.min}) must be <= replicas.max ({self.max})")
        return self


# extraEnv names whose literal value would be a secret in the pod spec and the ConfigMap; the CRD's
# CEL rules use these very patterns (a test holds them together). RE2 and Python agree on them.
SECRET_ENV_NAME = r"(?i)(^|_)(TOKEN|PASSWORD|PASSWD|PASS|SECRET|KEY|APIKEY|CREDENTIALS?)$"  # noqa: S105
# A URL with user information (`scheme://user:password@host`, `https://TOKEN@host`).
URL_WITH_CREDENTIALS = r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#@ ]*@"
SECRET_NAME_RE = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"  # noqa: S105 - patterns, not passwords
SECRET_KEY_RE = r"^[-._a-zA-Z0-9]+$"  # noqa: S105


class SecretKeySelector(_Model):
    """A key of a Secret in the PhoenixAuth's namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=SECRET_NAME_RE)
    key: str = Field(min_length=1, max_length=253, pattern=SECRET_KEY_RE)


class EnvVarSource(_Model):
    secret_key_ref: SecretKeySelector


class EnvVar(_Model):
    """A literal value (not a secret: it is also written to the ConfigMap) or a Secret reference."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128)
    value: str | None = Field(default=None, max_length=4096)
    value_from: EnvVarSource | None = None

    @model_validator(mode="after")
    def _no_literal_secret(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError(f"{self.name}: set value or valueFrom, not both")
        if self.value and re.search(SECRET_ENV_NAME, self.name):
            raise ValueError(
                f"{self.name} looks like a secret and its literal value would be readable in the "
                "Deployment and the ConfigMap: put it in a Secret and use valueFrom.secretKeyRef"
            )
        if self.value and re.search(URL_WITH_CREDENTIALS, self.value):
            raise ValueError(
                f"{self.name} holds a URL with credentials (user@ or user:password@), readable in the "
                "Deployment and the ConfigMap: put it in a Secret and use valueFrom.secretKeyRef"
            )
        return self

    @property
    def secret_ref(self) -> SecretKeySelector | None:
        return self.value_from.secret_key_ref if self.value_from is not None else None


# The widest trusted-proxy range per family. IPv4: a /8 (10.0.0.0/8), as the auth service allows.
# IPv6: a /32, what a registry hands a whole ISP; a site (and any cluster network, RFC 4193 ULA
# included) is a /48 at most, so a wider range can only cover networks that are not the proxies'.
MIN_TRUSTED_PREFIX = {4: 8, 6: 32}


def trusted_proxy_problem(text: str) -> str | None:
    """Why `text` cannot be a trustedProxies entry, or None. Same rules as the CRD's CEL (Go's
    netip): an IP or CIDR, no zone, no leading zeros in the prefix, no IPv4-mapped IPv6."""
    if "%" in text or re.search(r"/0[0-9]", text):
        return f"{text!r} is not an IP address or CIDR"
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return f"{text!r} is not an IP address or CIDR"
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped is not None:
        mapped = network.network_address.ipv4_mapped
        as_v4 = f"{mapped}/{max(0, network.prefixlen - 96)}"
        return f"{text!r} is an IPv4-mapped IPv6 range: write it as IPv4 ({as_v4})"
    widest = MIN_TRUSTED_PREFIX[network.version]
    if network.prefixlen < widest:
        return (
            f"{text!r} trusts {'every address' if network.prefixlen == 0 else 'too many addresses'}: "
            f"any client in it could choose the address it is throttled as; list your proxies' "
            f"ranges, at most /{widest} wide for IPv{network.version}"
        )
    return None


class AdminTokenSecretRef(SecretKeySelector):
    key: str = Field(default="PHOENIX_ADMIN_TOKEN", min_length=1, max_length=253, pattern=SECRET_KEY_RE)


class CacheSigningKeySecretRef(SecretKeySelector):
    key: str = Field(default="PHOENIX_CACHE_SIGNING_KEY", min_length=1, max_length=253, pattern=SECRET_KEY_RE)


class AdminService(_Model):
    """The ClusterIP Service `<name>-admin` in front of the admin port (admin API, /metrics)."""

    enabled: bool = True


LABEL_VALUE_RE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"


class MatchLabels(_Model):
    match_labels: dict[str, str] = Field(default_factory=dict, max_length=16)

    @field_validator("match_labels")
    @classmethod
    def _values(cls, value: dict[str, str]) -> dict[str, str]:
        for key, label in value.items():
            if not key or len(key) > 317 or len(label) > 63 or not re.match(LABEL_VALUE_RE, label):
                raise ValueError(f"{key}={label!r} is not a valid label selector entry")
        return value


class NetworkPeer(_Model):
    """Who may reach the admin port: pods matching podSelector in namespaces matching
    namespaceSelector (Kubernetes' NetworkPolicyPeer, label matches only)."""

    namespace_selector: MatchLabels | None = None
    pod_selector: MatchLabels | None = None

    @model_validator(mode="after")
    def _one(self) -> NetworkPeer:
        if self.namespace_selector is None and self.pod_selector is None:
            raise ValueError("set namespaceSelector, podSelector or both")
        return self


class AuthNetworkPolicy(_Model):
    """An opt-in NetworkPolicy on the auth pods: the public port open, the admin port only to
    `adminFrom` (none listed: no pod). Off by default: it needs a CNI that enforces policies, and
    who must reach the public port is the team's to say."""

    enabled: bool = False
    admin_from: tuple[NetworkPeer, ...] = Field(default=(), max_length=16)


class AuthService(_Model):
    image: str = Field(default=DEFAULT_AUTH_IMAGE, min_length=1, max_length=512, pattern=r"^\S+$")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    replicas: Replicas = Field(default_factory=Replicas)
    target_cpu_utilization: int = Field(default=70, ge=10, le=100, alias="targetCPUUtilization")
    workers: int = Field(default=1, ge=1, le=16)
    resources: Resources = Field(default_factory=_auth_resources)
    port: int = Field(default=3007, ge=1024, le=65535)
    # PHOENIX_ADMIN_PORT: the admin API and /metrics, never on the public Service.
    admin_port: int = Field(default=3008, ge=1024, le=65535)
    admin_service: AdminService = Field(default_factory=AdminService)
    network_policy: AuthNetworkPolicy = Field(default_factory=AuthNetworkPolicy)
    extra_env: tuple[EnvVar, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    # Your own Secrets for PHOENIX_ADMIN_TOKEN / PHOENIX_CACHE_SIGNING_KEY (>= 32 bytes each); unset,
    # the operator generates them once into the Secret `<name>-phoenix-keys` and keeps them.
    admin_token_secret_ref: AdminTokenSecretRef | None = None
    cache_signing_key_secret_ref: CacheSigningKeySecretRef | None = None

    @model_validator(mode="after")
    def _ports_differ(self) -> AuthService:
        if self.admin_port == self.port:
            raise ValueError(f"adminPort must differ from port (both are {self.port})")
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            if problem := trusted_proxy_problem(entry):
                raise ValueError(problem)
        return value

    @field_validator("extra_env")
    @classmethod
    def _not_reserved(cls, value: tuple[EnvVar, ...]) -> tuple[EnvVar, ...]:
        seen: set[str] = set()
        for env in value:
            if env.name in RESERVED_ENV:
                hint = RESERVED_ENV_HINT.get(env.name, "use the matching spec field")
                raise ValueError(
                    f"{env.name} is set by the operator and cannot be overridden in extraEnv: {hint}"
                )
            if env.name in seen:
                raise ValueError(f"{env.name} is listed twice")
            seen.add(env.name)
        return value


class SecretKeyRef(SecretKeySelector):
    key: str = Field(default="DATABASE_URL", min_length=1, max_length=253, pattern=SECRET_KEY_RE)


class RedisSecretKeyRef(SecretKeySelector):
    key: str = Field(default="REDIS_URL", min_length=1, max_length=253, pattern=SECRET_KEY_RE)


class Database(_Model):
    secret_ref: SecretKeyRef
    # The migration Job's URL (a role that owns the schema); unset, the Job uses secretRef's.
    migration_secret_ref: SecretKeyRef | None = None
    connection_budget: int | None = Field(default=None, ge=1, le=100_000)
    detect: bool = False
    reserved_connections: int = Field(default=5, ge=0, le=100_000)

    @model_validator(mode="after")
    def _one_source(self) -> Database:
        if (self.connection_budget is None) == (not self.detect):
            raise ValueError("set exactly one of database.connectionBudget or database.detect: true")
        return self


class Pool(_Model):
    min_per_pod: int = Field(default=2, ge=1, le=1000)
    max_per_pod: int = Field(default=20, ge=1, le=1000)
    policy: Literal["elastic", "fixed"] = "elastic"

    @model_validator(mode="after")
    def _order(self) -> Pool:
        if self.min_per_pod > self.max_per_pod:
            raise ValueError(
                f"pool.minPerPod ({self.min_per_pod}) must be <= pool.maxPerPod ({self.max_per_pod})"
            )
        return self


EvictionPolicy = Literal[
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
]


class ManagedRedis(_Model):
    image: str = Field(default=DEFAULT_REDIS_IMAGE, min_length=1, max_length=512, pattern=r"^\S+$")
    max_memory: str = Field(default="128mb", pattern=r"^[0-9]+(b|kb|mb|gb)?$")
    eviction_policy: EvictionPolicy = "allkeys-lru"
    resources: Resources = Field(default_factory=_redis_resources)


class RedisCASecretKeyRef(SecretKeySelector):
    key: str = Field(default="ca.crt", min_length=1, max_length=253, pattern=SECRET_KEY_RE)


class ExternalRedis(_Model):
    secret_ref: RedisSecretKeyRef
    # The CA bundle (PEM) that signs the server's certificate of a rediss:// URL, mounted into the
    # auth pods as PHOENIX_REDIS_CA_FILE; unset, a rediss:// server is checked against the image's CAs.
    ca_secret_ref: RedisCASecretKeyRef | None = None


class Redis(_Model):
    mode: Literal["managed", "external"] = "managed"
    managed: ManagedRedis | None = None
    external: ExternalRedis | None = None

    @model_validator(mode="after")
    def _exclusive(self) -> Redis:
        if self.mode == "external" and self.external is None:
            raise ValueError("redis.mode external requires redis.external.secretRef")
        if self.mode == "external" and self.managed is not None:
            raise ValueError("redis.managed must not be set when redis.mode is external")
        if self.mode == "managed" and self.external is not None:
            raise ValueError("redis.external must not be set when redis.mode is managed")
        return self

    @property
    def managed_or_default(self) -> ManagedRedis:
        return self.managed or ManagedRedis()


class Cache(_Model):
    ttl_seconds: int = Field(default=300, ge=1, le=86400)
    l1_max_entries: int = Field(default=100_000, ge=0, le=10_000_000)
    enable_auth_cache: bool = True
    enable_query_cache: bool = True

    @property
    def summary(self) -> str:
        """Short text for the printer column: which layers are on."""
        layers = [n for n, on in (("L1", self.enable_auth_cache), ("L2", self.enable_query_cache)) if on]
        return "+".join(layers) if layers else "off"


class Migrations(_Model):
    enabled: bool = True
    index_set: Literal["seed"] = "seed"
    rollback: bool = False
    backoff_limit: int = Field(default=3, ge=0, le=20)
    active_deadline_seconds: int = Field(default=900, ge=30, le=86400)


class Thresholds(_Model):
    api_latency_ms: float = Field(default=100, gt=0, le=600_000)
    db_query_ms: float = Field(default=25, gt=0, le=600_000)
    cache_hit_ratio: float = Field(default=0.95, ge=0, le=1)
    error_rate: float = Field(default=0.01, ge=0, le=1)


class Alerts(_Model):
    api_latency: bool = True
    db_query_latency: bool = True
    cache_hit_ratio: bool = True
    error_rate: bool = True
    pool_saturation: bool = True


class PrometheusRuleSpec(_Model):
    enabled: bool = True
    thresholds: Thresholds = Field(default_factory=Thresholds)
    alerts: Alerts = Field(default_factory=Alerts)
    for_duration: str = Field(default="5m", alias="for", pattern=r"^[0-9]+(s|m|h)$")
    runbook_base_url: str = Field(
        default="https://github.com/phoenix-dev/phoenix/blob/main/docs/operator.md", max_length=1024
    )


class ServiceMonitorSpec(_Model):
    enabled: bool = True
    interval: str = Field(default="30s", pattern=r"^[0-9]+(s|m|h)$")


class Monitoring(_Model):
    enabled: bool = True  # PHOENIX_ENABLE_MONITORING: /metrics and the summary log line
    prometheus_rule: PrometheusRuleSpec = Field(default_factory=PrometheusRuleSpec)
    service_monitor: ServiceMonitorSpec = Field(default_factory=ServiceMonitorSpec)


class PhoenixAuthSpec(_Model):
    auth_service: AuthService = Field(default_factory=AuthService)
    database: Database
    pool: Pool = Field(default_factory=Pool)
    redis: Redis = Field(default_factory=Redis)
    cache: Cache = Field(default_factory=Cache)
    migrations: Migrations = Field(default_factory=Migrations)
    monitoring: Monitoring = Field(default_factory=Monitoring)
    paused: bool = False

    @model_validator(mode="after")
    def _scrape_target(self) -> PhoenixAuthSpec:
        if self.monitoring.service_monitor.enabled and not self.auth_service.admin_service.enabled:
            raise ValueError(
                "monitoring.serviceMonitor.enabled needs authService.adminService.enabled: the "
                "ServiceMonitor scrapes /metrics through the admin Service (the public one answers 404 "
                "there); disable the ServiceMonitor too, or keep the admin Service"
            )
        return self

    @model_validator(mode="after")
    def _budget_fits(self) -> PhoenixAuthSpec:
        budget = self.database.connection_budget
        if budget is not None:
            need = self.auth_service.replicas.max * self.pool.min_per_pod
            usable = budget - self.database.reserved_connections
            if usable < need:
                raise ValueError(
                    f"database.connectionBudget - reservedConnections = {usable} cannot give "
                    f"{self.auth_service.replicas.max} replicas (replicas.max) "
                    f"pool.minPerPod={self.pool.min_per_pod} "
                    f"each (needs {need}): raise the budget or lower replicas.max / pool.minPerPod"
                )
        return self


@dataclass(frozen=True)
class SecretUse:
    """A Secret key the spec names: the field naming it and whether the auth pods read it (then
    its value's digest is part of their config hash, so a change rolls them)."""

    field: str
    ref: SecretKeySelector
    auth_pods: bool


def secret_uses(spec: PhoenixAuthSpec) -> list[SecretUse]:
    """Every Secret key the spec names (the operator reads, labels and watches these)."""
    db = spec.database
    uses = [SecretUse("spec.database.secretRef", db.secret_ref, True)]
    if db.migration_secret_ref is not None:
        uses.append(SecretUse("spec.database.migrationSecretRef", db.migration_secret_ref, False))
    if spec.redis.external is not None:
        uses.append(SecretUse("spec.redis.external.secretRef", spec.redis.external.secret_ref, True))
        if (ca := spec.redis.external.ca_secret_ref) is not None:
            uses.append(SecretUse("spec.redis.external.caSecretRef", ca, True))
    svc = spec.auth_service
    if svc.admin_token_secret_ref is not None:
        uses.append(SecretUse("spec.authService.adminTokenSecretRef", svc.admin_token_secret_ref, True))
    if svc.cache_signing_key_secret_ref is not None:
        field = "spec.authService.cacheSigningKeySecretRef"
        uses.append(SecretUse(field, svc.cache_signing_key_secret_ref, True))
    for i, env in enumerate(spec.auth_service.extra_env):
        if env.secret_ref is not None:
            field = f"spec.authService.extraEnv[{i}].valueFrom.secretKeyRef"
            uses.append(SecretUse(field, env.secret_ref, True))
    return uses


def _loc(loc: tuple[int | str, ...]) -> str:
    """Turn pydantic's location into the CRD's field path, e.g. spec.authService.replicas."""
    parts: list[str] = ["spec"]
    for item in loc:
        if isinstance(item, int):
            parts[-1] += f"[{item}]"
        else:
            parts.append(to_camel(item) if "_" in item else item)
    return ".".join(parts)


def parse_spec(spec: Mapping[str, Any] | None) -> PhoenixAuthSpec:
    """Parse a PhoenixAuth `.spec` into the typed model, or raise SpecInvalid naming the field."""
    try:
        return PhoenixAuthSpec.model_validate(dict(spec or {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = _loc(tuple(first.get("loc", ())))
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        raise SpecInvalid(field=field, message=f"{field}: {message}") from None
