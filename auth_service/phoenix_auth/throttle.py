"""Login throttling: per-account and per-IP failure counters with exponential backoff and lockout.

Counters live in Redis so every replica sees them (keys `phoenix:t:...`, the account part is a
SHA-256 of the lower-cased email so Redis holds no addresses). A failure increments both
counters (remembered for `throttle_window` seconds). Past `throttle_free_failures` failures an
account is locked for `base * 2^(n - free - 1)` seconds (capped at `throttle_max_delay`); at
`throttle_lockout_failures` (default 20, well under NIST 800-63B's 100) it is locked for the
maximum delay. The IP counter works the same with `throttle_ip_free_failures`, which stops
credential stuffing across many accounts from one address. A success clears the account's
counter, not the IP's. Throttling is keyed by the submitted email whether or not it exists, so
429s reveal nothing about which accounts exist.

When Redis is unreachable the same logic runs on a bounded in-process table, so brute force is
still slowed (per replica) while Redis is down.

`securityRisk` (0..1) = the larger of account failures / lockout and IP failures / (2 x IP allowance).
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from collections import OrderedDict
from dataclasses import dataclass

from .errors import Throttled
from .redislink import UNAVAILABLE, RedisLink
from .settings import Settings

LOCAL_MAX_KEYS = 100_000


@dataclass(frozen=True, slots=True)
class ThrottleState:
    account_failures: int
    ip_failures: int


def client_ip(peer: str | None, forwarded_for: str | None, settings: Settings) -> str:
    """The client address: the peer, unless the peer is a trusted proxy and sent X-Forwarded-For.

    Walks X-Forwarded-For from the right, skipping trusted proxies, and returns the first
    untrusted hop (the leftmost values are client-controlled and never trusted blindly)."""
    peer = peer or "0.0.0.0"  # noqa: S104 - a placeholder address, not a bind
    networks = settings.trusted_proxy_networks
    if not forwarded_for or not networks or not _trusted(peer, networks):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer
        if not _trusted(hop, networks):
            return hop
    return hops[0] if hops else peer


def _trusted(address: str, networks: tuple) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


class _LocalCounters:
    """Fallback store used while Redis is down: {key: [count, counter expiry, locked until]}."""

    def __init__(self) -> None:
        self._data: OrderedDict[str, list[float]] = OrderedDict()

    def _get(self, key: str, now: float) -> list[float]:
        item = self._data.get(key)
        if item is None or (item[1] < now and item[2] < now):
            item = [0, 0.0, 0.0]
            self._data[key] = item
            while len(self._data) > LOCAL_MAX_KEYS:
                self._data.popitem(last=False)
        return item

    def peek(self, key: str) -> tuple[int, float]:
        now = time.time()
        item = self._data.get(key)
        if item is None:
            return 0, 0.0
        count = int(item[0]) if item[1] >= now else 0
        return count, max(0.0, item[2] - now)

    def incr(self, key: str, window: int) -> int:
        now = time.time()
        item = self._get(key, now)
        if item[1] < now:
            item[0] = 0
        item[0] += 1
        item[1] = now + window
        return int(item[0])

    def lock(self, key: str, seconds: float) -> None:
        now = time.time()
        self._get(key, now)[2] = now + seconds

    def clear(self, key: str) -> None:
        self._data.pop(key, None)


class Throttle:
    def __init__(self, settings: Settings, redis: RedisLink) -> None:
        self._s = settings
        self._redis = redis
        self._local = _LocalCounters()

    @staticmethod
    def _keys(email: str, ip: str) -> tuple[str, str]:
        digest = hashlib.sha256(email.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return f"phoenix:t:a:{digest}", f"phoenix:t:ip:{ip}"

    def delay(self, failures: int, free: int, lockout: int | None) -> float:
        """Seconds to lock after `failures` consecutive failures (0 = no lock)."""
        if lockout is not None and failures >= lockout:
            return self._s.throttle_max_delay
        if failures <= free:
            return 0.0
        exponent = min(failures - free - 1, 40)
        return min(self._s.throttle_max_delay, self._s.throttle_base_delay * (2**exponent))

    def risk(self, state: ThrottleState) -> float:
        account = state.account_failures / self._s.throttle_lockout_failures
        ip = state.ip_failures / (2 * self._s.throttle_ip_free_failures)
        return round(min(1.0, max(account, ip)), 3)

    async def check(self, email: str, ip: str) -> ThrottleState:
        """Raise Throttled while the account or IP is locked; else return the failure counts."""
        acct, ipk = self._keys(email, ip)

        async def read(c):  # type: ignore[no-untyped-def]
            pipe = c.pipeline(transaction=False)
            pipe.pttl(acct + ":lock").pttl(ipk + ":lock").get(acct).get(ipk)
            return await pipe.execute()

        result = await self._redis.call(read)
        if result is UNAVAILABLE:
            a_count, a_wait = self._local.peek(acct)
            i_count, i_wait = self._local.peek(ipk)
        else:
            a_ttl, i_ttl, a_raw, i_raw = result
            a_wait, i_wait = max(0, a_ttl) / 1000, max(0, i_ttl) / 1000
            a_count, i_count = int(a_raw or 0), int(i_raw or 0)
        wait = max(a_wait, i_wait)
        if wait > 0:
            raise Throttled(retry_after=math.ceil(wait))
        return ThrottleState(account_failures=a_count, ip_failures=i_count)

    async def failure(self, email: str, ip: str) -> None:
        acct, ipk = self._keys(email, ip)
        window = self._s.throttle_window

        async def bump(c):  # type: ignore[no-untyped-def]
            pipe = c.pipeline(transaction=False)
            pipe.incr(acct).expire(acct, window).incr(ipk).expire(ipk, window)
            return await pipe.execute()

        result = await self._redis.call(bump)
        if result is UNAVAILABLE:
            a_count, i_count = self._local.incr(acct, window), self._local.incr(ipk, window)
        else:
            a_count, i_count = int(result[0]), int(result[2])
        a_delay = self.delay(a_count, self._s.throttle_free_failures, self._s.throttle_lockout_failures)
        i_delay = self.delay(i_count, self._s.throttle_ip_free_failures, None)
        locks = [(k, d) for k, d in ((acct, a_delay), (ipk, i_delay)) if d > 0]
        if not locks:
            return
        if result is UNAVAILABLE:
            for key, seconds in locks:
                self._local.lock(key, seconds)
            return

        async def lock(c):  # type: ignore[no-untyped-def]
            pipe = c.pipeline(transaction=False)
            for key, seconds in locks:
                pipe.set(key + ":lock", b"1", px=max(1, int(seconds * 1000)))
            return await pipe.execute()

        if await self._redis.call(lock) is UNAVAILABLE:
            for key, seconds in locks:
                self._local.lock(key, seconds)

    async def success(self, email: str, ip: str, state: ThrottleState | None = None) -> None:
        """Clear the account's failure counter (not the IP's).

        `state` is what `check` read for this login. When it saw no failures (and, having passed,
        no lock) there is nothing to clear, and the Redis round trip is skipped: it sat on every
        successful login's critical path. Failures recorded by concurrent attempts after that
        read are then kept, never cleared early, so this is never more lenient than clearing."""
        acct, _ = self._keys(email, ip)
        self._local.clear(acct)
        if state is not None and state.account_failures == 0:
            return
        if self._redis.available():
            await self._redis.call(lambda c: c.delete(acct, acct + ":lock"))
