"""The auth service's one settings object, read from the environment once at start-up.

Names follow the seed's contract (`DATABASE_URL`, `REDIS_URL`, `PHOENIX_*`). Every value is
validated here so a bad deployment fails at start with a message naming the variable, not
later on the first login. Nothing else in the service reads `os.environ`.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .addresses import Network, parse_network
from .hashpool import cpu_budget

DEFAULT_DATABASE_URL = "postgresql://phoenix:phoenix@127.0.0.1:5432/phoenix"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
MIN_SECRET_BYTES = 32  # PHOENIX_ADMIN_TOKEN and PHOENIX_CACHE_SIGNING_KEY: 256 bits
SECRET_PURPOSE = {"admin_token": "the admin API", "cache_signing_key": "L2 user/session caching"}
_COOKIE_NAME_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")


class Settings(BaseSettings):
    """Validated configuration of one auth-service process."""

    # hide_input_in_errors: a traceback never prints a rejected value (a short admin token or signing
    # key, a URL with a password); `phoenix-auth` shows non-secret ones itself (cli.format_settings_error).
    model_config = SettingsConfigDict(
        env_prefix="PHOENIX_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    # --- connections (the seed's names, no prefix) ---
    database_url: SecretStr = Field(
        default=SecretStr(DEFAULT_DATABASE_URL), validation_alias=AliasChoices("DATABASE_URL")
    )
    # Empty string disables the L2 (Redis) layer entirely.
    redis_url: SecretStr = Field(
        default=SecretStr(DEFAULT_REDIS_URL), validation_alias=AliasChoices("REDIS_URL")
    )
    # CA bundle that signs the Redis server's certificate, for a rediss:// REDIS_URL (the standard
    # redis-py `ssl_ca_certs` URL option works too); unset: the system's trusted CAs.
    redis_ca_file: str | None = None
    # HMAC-SHA256 key for every value the L2 cache writes to Redis (>= 32 bytes, never stored in
    # Redis): a value that does not verify is refused. Unset: L2 user/session caching is off.
    cache_signing_key: SecretStr | None = None

    # --- the seed's PHOENIX_* switches ---
    enable_query_cache: bool = True  # L2 (Redis) cache of user auth records
    enable_auth_cache: bool = True  # L1 (in-process) cache of user auth records and sessions
    enable_monitoring: bool = True  # /metrics and the 5-minute summary log line
    max_db_connections: int = Field(default=10, ge=1, le=1000)  # per process; the operator sizes it
    min_db_connections: int = Field(default=1, ge=0, le=1000)
    cache_ttl: int = Field(default=300, ge=1, le=86400)  # seconds, L2 and L1 record lifetime

    # --- HTTP server ---
    host: str = "127.0.0.1"
    port: int = Field(default=3007, ge=1, le=65535)
    # The admin listener (admin API, /metrics), bound on `host` like the public one; the public
    # port answers 404 for those routes.
    admin_port: int = Field(default=3008, ge=1, le=65535)
    workers: int = Field(default=2, ge=1, le=64)
    max_body_bytes: int = Field(default=16 * 1024, ge=256, le=1024 * 1024)
    # uvicorn has no request-body timeout: a client trickling its body would hold a request open forever.
    body_read_timeout: float = Field(default=10.0, gt=0, le=300)  # seconds to receive the whole body
    # OWASP: cap password length so a huge password cannot make hashing a DoS vector.
    max_password_bytes: int = Field(default=1024, ge=64, le=65536)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list
    )  # CIDRs, comma-separated in env

    # --- L1 cache ---
    l1_max_entries: int = Field(default=100_000, ge=0, le=10_000_000)

    # --- database behaviour ---
    db_pool_timeout: float = Field(default=2.0, gt=0, le=60)  # wait for a pooled connection, then 503
    db_statement_timeout_ms: int = Field(default=2000, ge=10, le=600_000)

    # --- password hashing (argon2id, OWASP's second recommended profile by default) ---
    argon2_memory_kib: int = Field(default=19 * 1024, ge=8 * 1024, le=4 * 1024 * 1024)
    argon2_time_cost: int = Field(default=2, ge=1, le=20)
    argon2_parallelism: int = Field(default=1, ge=1, le=16)
    # Hashing threads for the whole server (all workers share them: hashpool.py); default the CPUs
    # the cgroup's quota grants, i.e. the pod's CPU limit, not the node's cores.
    hash_threads: int = Field(default_factory=cpu_budget, ge=1, le=256)
    # Set by the server for its workers: the supervisor's hashing socket (empty: hash in-process).
    hash_socket: str = ""
    # Logins in progress per process (each ends in one hash); beyond it a login gets 503 OVERLOADED
    # at once instead of queueing without bound (a flood across many accounts and IPs evades
    # throttling). 64 is ~0.5 s of queue at 2 threads x ~16 ms per verify.
    max_pending_logins: int = Field(default=64, ge=1, le=100_000)
    # Admission tied to the hashing budget (login.py): a login is admitted only while the hash jobs
    # queued or running on the server's threads (all workers') plus this process's admitted logins
    # not yet hashing would make it wait at most this many verifies for a thread; beyond it, 503
    # OVERLOADED before its body is read. An admitted login whose verify still finds no thread
    # after this many verifies (the fastest recent one of the slowest hash kind present) gets 503
    # OVERLOADED without hashing. 2 keeps
    # an admitted login within 2 verifies of wait + its own verify + its own work under any flood;
    # 0 switches both off (only max_pending_logins is left).
    max_hash_wait_verifies: float = Field(default=2.0, ge=0, le=10_000)

    # --- sessions ---
    session_ttl: int = Field(default=12 * 3600, ge=60, le=90 * 86400)  # seconds
    cookie_name: str = "phoenix_session"  # sent as __Host-<name> while Secure: see session_cookie_name
    cookie_secure: bool = True

    # --- throttling (throttle.py: counters in Redis, in-process while Redis is unreachable) ---
    throttle_free_failures: int = Field(default=5, ge=1, le=50)  # failures before backoff starts
    throttle_lockout_failures: int = Field(default=20, ge=2, le=99)  # NIST 800-63B: well under 100
    throttle_base_delay: float = Field(default=1.0, gt=0, le=60)  # seconds, doubled per failure
    throttle_max_delay: float = Field(default=900.0, gt=0, le=86400)
    throttle_window: int = Field(default=3600, ge=60, le=86400)  # seconds a failure is remembered
    # Failures from one address (IPv6: one /64) on accounts not known from it, before backoff.
    throttle_ip_free_failures: int = Field(default=50, ge=1, le=100_000)
    # Seconds an address stays known for an account after a successful login from it; a known
    # address is never refused by the per-address limit (0: no address is ever known).
    throttle_known_address_ttl: int = Field(default=30 * 86400, ge=0, le=400 * 86400)

    # --- admin API (revoke all sessions of a user); unset disables the admin routes ---
    admin_token: SecretStr | None = None  # >= 32 bytes; served on admin_port only

    # --- logs ---
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    summary_interval: int = Field(default=300, ge=0, le=86400)  # seconds; 0 disables the summary line

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                parse_network(cidr)
            except ValueError as exc:
                raise ValueError(f"PHOENIX_TRUSTED_PROXIES: {exc}") from exc
        return value

    @field_validator("admin_token", "cache_signing_key")
    @classmethod
    def _check_secret_length(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        """Set means at least 32 bytes: an empty or short value is a mistake, never "off" (unset is off)."""
        if value is not None:
            size = len(value.get_secret_value().encode("utf-8", "surrogatepass"))
            if size < MIN_SECRET_BYTES:
                name = f"PHOENIX_{(info.field_name or '').upper()}"
                purpose = SECRET_PURPOSE[info.field_name or ""]
                raise ValueError(
                    f"{name} must be at least {MIN_SECRET_BYTES} bytes (it has {size}); generate one "
                    f"with `openssl rand -base64 32`, or unset {name} to turn {purpose} off"
                )
        return value

    @field_validator("cookie_name")
    @classmethod
    def _check_cookie_name(cls, value: str) -> str:
        if not _COOKIE_NAME_RE.match(value):
            raise ValueError("PHOENIX_COOKIE_NAME must be a cookie token (letters, digits, !#$%&'*+-.^_`|~)")
        return value

    @field_validator("redis_ca_file")
    @classmethod
    def _check_ca_file(cls, value: str | None) -> str | None:
        if value is not None and not (os.path.isfile(value) and os.access(value, os.R_OK)):
            raise ValueError(f"PHOENIX_REDIS_CA_FILE: {value!r} is not a readable file")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("DATABASE_URL must start with postgresql:// or postgres://")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if raw and not raw.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("REDIS_URL must start with redis://, rediss:// or unix:// (or be empty)")
        return value

    @model_validator(mode="after")
    def _check_ranges(self) -> Settings:
        if self.min_db_connections > self.max_db_connections:
            raise ValueError(
                "PHOENIX_MIN_DB_CONNECTIONS must be <= PHOENIX_MAX_DB_CONNECTIONS "
                f"({self.min_db_connections} > {self.max_db_connections})"
            )
        if self.throttle_free_failures >= self.throttle_lockout_failures:
            raise ValueError("PHOENIX_THROTTLE_FREE_FAILURES must be < PHOENIX_THROTTLE_LOCKOUT_FAILURES")
        if self.admin_port == self.port:
            raise ValueError(f"PHOENIX_ADMIN_PORT must differ from PHOENIX_PORT (both are {self.port})")
        if self.redis_ca_file is not None and not self.redis_url.get_secret_value().startswith("rediss://"):
            raise ValueError("PHOENIX_REDIS_CA_FILE is set but REDIS_URL does not start with rediss:// (TLS)")
        if not self.cookie_secure and self.cookie_name.startswith(("__Host-", "__Secure-")):
            raise ValueError("PHOENIX_COOKIE_NAME: browsers drop __Host-/__Secure- cookies without Secure")
        return self

    @cached_property
    def trusted_proxy_networks(self) -> tuple[Network, ...]:
        return tuple(parse_network(c) for c in self.trusted_proxies)

    @cached_property
    def session_cookie_name(self) -> str:
        """The cookie's name on the wire: `__Host-` + PHOENIX_COOKIE_NAME while the cookie is Secure,
        so browsers refuse it unless it is Secure, host-only (no Domain) and Path=/: a sibling
        subdomain or a plain-HTTP page cannot plant or overwrite it."""
        if self.cookie_secure and not self.cookie_name.startswith("__Host-"):
            return "__Host-" + self.cookie_name
        return self.cookie_name

    @property
    def redis_enabled(self) -> bool:
        return bool(self.redis_url.get_secret_value())
