"""Integrity of the L2 cache: every value written to Redis carries an HMAC-SHA256 and a signed expiry.

Why: Redis is shared infrastructure (a managed service, another app's instance, a password in
many hands). Unsigned, `SET phoenix:c:s:<sha256(T)> ...` would make any token T a session of any
user, and `SET phoenix:c:u:<id> ...` would raise a user's role. A sealed value is used only if its
MAC verifies for *the key it was read from* (so a genuine value copied to another key is refused)
and its signed expiry has not passed (so a value kept past its TTL, e.g. by PERSIST, is refused).
The key comes from the environment (`PHOENIX_CACHE_SIGNING_KEY`) and never reaches Redis.

What it cannot stop: a Redis writer replaying a value this service wrote for the same key while
that value is still within its signed expiry (at most `PHOENIX_CACHE_TTL` after it was written),
and deleting or resetting values (a deleted value is a cache miss; the throttle counters, which
are Redis counters, are not signed).

Format: ``b"P1" + mac (32 bytes) + b"<expires, epoch seconds>|" + payload`` with
``mac = HMAC-SHA256(k, redis_key + b"\\0" + b"<expires>|" + payload)`` and
``k = HMAC-SHA256(PHOENIX_CACHE_SIGNING_KEY, b"phoenix-auth L2 v1")`` (a key used for nothing else).
Sealing or opening costs about 1 µs; only L2 reads and writes pay it, never an L1 hit.
"""

from __future__ import annotations

import hmac
import math
import time

VERSION = b"P1"
_MAC_END = len(VERSION) + 32
_DOMAIN = b"phoenix-auth L2 v1"


class Refused(Exception):
    """An L2 value that must not be used; `reason` is a metric label: `signature` (missing, malformed
    or wrong MAC: not written by a holder of the key, or written for another key) or `expired`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class L2Signer:
    """Seals and opens L2 values with one key derived from `PHOENIX_CACHE_SIGNING_KEY`."""

    __slots__ = ("_key",)

    def __init__(self, secret: bytes) -> None:
        self._key = hmac.digest(secret, _DOMAIN, "sha256")

    def seal(self, redis_key: str, payload: bytes, ttl: float, now: float | None = None) -> bytes:
        """The value to store under `redis_key`, valid for `ttl` seconds from `now`."""
        expires = math.ceil((time.time() if now is None else now) + ttl)
        body = b"%d|" % expires + payload
        return VERSION + hmac.digest(self._key, redis_key.encode() + b"\0" + body, "sha256") + body

    def open(self, redis_key: str, raw: bytes, now: float | None = None) -> bytes:
        """The payload of a value read from `redis_key`, or `Refused`."""
        if raw[: len(VERSION)] != VERSION or len(raw) <= _MAC_END:
            raise Refused("signature")
        body = raw[_MAC_END:]
        expected = hmac.digest(self._key, redis_key.encode() + b"\0" + body, "sha256")
        if not hmac.compare_digest(raw[len(VERSION) : _MAC_END], expected):
            raise Refused("signature")
        expires, _, payload = body.partition(b"|")
        if int(expires) < (time.time() if now is None else now):
            raise Refused("expired")
        return payload
