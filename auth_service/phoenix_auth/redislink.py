"""The Redis client with a circuit breaker: Redis is an accelerator, never a dependency.

Every Redis call goes through `RedisLink.call`, bounded by short socket timeouts and without
retries. After a failure the link stays open-circuit for `BREAK_SECONDS`, during which calls
return `UNAVAILABLE` immediately (no connect attempt per request), then one call probes again.
Callers treat `UNAVAILABLE` as "serve from PostgreSQL" and count the operation as degraded.

TLS: a `rediss://` REDIS_URL connects with TLS and verifies the server's certificate and host
name (redis-py's defaults for rediss); `PHOENIX_REDIS_CA_FILE` (or the URL's `ssl_ca_certs`
option) names the CA that signed it, else the system's trusted CAs are used. A certificate that
does not verify is a Redis error like any other: the breaker opens and PostgreSQL answers.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal, TypeVar

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from .metrics import Metrics
from .settings import Settings

log = logging.getLogger("phoenix_auth.redis")

T = TypeVar("T")
BREAK_SECONDS = 1.0
SOCKET_TIMEOUT = 0.25

# Everything the service sends to Redis, as the rule of a Redis ACL user (managed Redis, or one
# shared with other apps): keys under `phoenix:` only (cache `phoenix:c:*`, throttle
# `phoenix:t:*`), no pub/sub. Connection set-up: CLIENT SETNAME (and SELECT for a database other
# than 0; CLIENT SETINFO is not sent); the cache: GET, SET, UNLINK, SCAN; the throttle: its Lua
# scripts by EVALSHA (SCRIPT LOAD when Redis does not know them yet) and the commands they call,
# and a pipeline of INCRBY (redis-py's `incr`) + EXPIRE; health: PING. A test runs the service
# under exactly this rule and checks Redis's ACL LOG stays empty; docs/auth-service.md shows it.
ACL_COMMANDS = (
    "ping", "client|setname", "select",
    "get", "set", "unlink", "scan",
    "evalsha", "script|load", "incr", "incrby", "decrby", "expire", "pttl", "del",
    "hget", "hset", "hdel", "hlen", "hgetall",
)  # fmt: skip
ACL_KEYS = "~phoenix:*"


def acl_rule() -> str:
    """The `ACL SETUSER <user> on ><password> ...` rule, without the user and password."""
    return f"resetkeys {ACL_KEYS} resetchannels -@all " + " ".join("+" + c for c in ACL_COMMANDS)


class Unavailable(enum.Enum):
    """Sentinel: Redis was not asked or did not answer; fall back to PostgreSQL. An enum member, so
    `result is UNAVAILABLE` narrows a call's result to what Redis answered."""

    UNAVAILABLE = "UNAVAILABLE"

    def __repr__(self) -> str:
        return "UNAVAILABLE"


UNAVAILABLE: Final = Unavailable.UNAVAILABLE


class RedisLink:
    """One Redis client per process, or none when `REDIS_URL` is empty."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._metrics = metrics
        self._open_until = 0.0
        self.healthy = False
        self.failures = 0
        self.client: aioredis.Redis | None = None
        if settings.redis_enabled:
            tls: dict[str, Any] = {}
            if settings.redis_ca_file is not None:  # settings allow it with rediss:// only
                tls["ssl_ca_certs"] = settings.redis_ca_file
            self.client = aioredis.Redis.from_url(
                settings.redis_url.get_secret_value(),
                **tls,
                socket_timeout=SOCKET_TIMEOUT,
                socket_connect_timeout=SOCKET_TIMEOUT,
                retry=Retry(NoBackoff(), 0),
                retry_on_timeout=False,
                health_check_interval=0,
                max_connections=256,
                client_name="phoenix-auth",
                driver_info=None,  # no CLIENT SETINFO: one command fewer for an ACL (Redis < 7.2 lacks it)
            )

    @property
    def configured(self) -> bool:
        return self.client is not None

    def available(self) -> bool:
        """False while the breaker is open; cheap enough for every request."""
        return self.client is not None and time.monotonic() >= self._open_until

    async def call(
        self, fn: Callable[[aioredis.Redis], Awaitable[T]]
    ) -> T | Literal[Unavailable.UNAVAILABLE]:
        """Run `fn(client)`; on any Redis or timeout error open the breaker and return UNAVAILABLE."""
        if self.client is None:
            return UNAVAILABLE
        if time.monotonic() < self._open_until:
            self._metrics.degrade("redis")
            return UNAVAILABLE
        try:
            result = await fn(self.client)
        except (RedisError, OSError, TimeoutError) as exc:
            self._trip(exc)
            self._metrics.degrade("redis")
            # Drop every pooled connection now: after a Redis restart each stale one would otherwise
            # fail once when next used and re-open the breaker, flapping for seconds after recovery.
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await self.client.connection_pool.disconnect()
            return UNAVAILABLE
        if not self.healthy:
            self.healthy = True
            self._metrics.dependency_up.labels("redis").set(1)
            log.info("redis reachable")
        return result

    def _trip(self, exc: BaseException) -> None:
        self._open_until = time.monotonic() + BREAK_SECONDS
        self.failures += 1
        if self.healthy or self.failures == 1:
            log.warning(
                "redis unreachable, serving from PostgreSQL", extra={"fields": {"error": type(exc).__name__}}
            )
        self.healthy = False
        self._metrics.dependency_up.labels("redis").set(0)

    async def ping(self) -> bool:
        return (await self.call(lambda c: c.ping())) is True

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
