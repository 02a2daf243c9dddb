"""Two cache layers in front of PostgreSQL: L1 in-process (TTL + LRU) and L2 Redis.

What lives where, and why:
- L1 keys `e:<lower email>` (user record WITH its password hash, for login), `u:<id>` (user
  record, for session checks) and `s:<sha256 hex>` (session record). An L1 hit does no I/O.
- L2 keys `phoenix:c:u:<id>` and `phoenix:c:s:<sha256 hex>`, compact JSON arrays sealed with an
  HMAC and a signed expiry (signing.py): a value that does not verify for its key is refused,
  counted (`phoenix_cache_l2_rejected_total`) and looked up in PostgreSQL. Without
  `PHOENIX_CACHE_SIGNING_KEY` L2 is off (Redis then only holds throttle counters). L2 never holds
  a password hash: login only needs the hash on an L1 miss, and then one index-only lookup in
  PostgreSQL (~0.2 ms) is noise next to the argon2id verify (~16 ms), so keeping hashes out of
  Redis costs nothing measurable while a Redis dump or a shared Redis leaks no hashes.
  The hot path (session validation) never needs a hash and uses L1 -> L2 -> PostgreSQL.

Correctness under outside writes (see invalidation.py):
- Every invalidation bumps `generation`; a value read from PostgreSQL is stored only if no
  invalidation happened since the read began (`fill_*(..., generation)`), so a NOTIFY racing a
  fill cannot leave a stale entry behind.
- The caches are used only while the LISTEN connection is up (`listening`). While it is down,
  every lookup goes to PostgreSQL (counted as degraded) and nothing is filled; on (re)connect L1 is
  cleared and this process's L2 namespace is swept before L2 is used again.
- An L2 delete that fails (Redis unreachable or paused) leaves a value that may be stale (a
  logged-out session, a disabled user) in Redis for up to its TTL. So a failed delete makes this
  process stop reading L2 at once, and sweep the whole L2 namespace again (retried every second
  until one full pass succeeds) before it reads L2 again: a revoked session is never served from
  Redis, on any replica, since every replica runs its own delete on the NOTIFY.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from redis.asyncio import Redis

from .metrics import Metrics
from .records import SessionRecord, UserRecord
from .redislink import UNAVAILABLE, RedisLink
from .settings import Settings
from .signing import L2Signer, Refused

log = logging.getLogger("phoenix_auth.cache")

# `c:` keeps sealed values apart from the unsealed `phoenix:[us]:*` of earlier versions, which a
# replica still running during a rolling upgrade may write and read (they expire by their TTL).
L2_PREFIX = "phoenix:c:"
L2_SWEEP_PATTERN = L2_PREFIX + "[us]:*"
SWEEP_RETRY_SECONDS = 1.0  # the Redis breaker's interval: a retry sooner would not reach Redis
REJECT_LOG_INTERVAL = 10.0  # seconds between two warnings about refused L2 values

_R = TypeVar("_R", UserRecord, SessionRecord)
Entry = UserRecord | SessionRecord  # what L1 holds


class L1Cache:
    """A bounded dict with per-entry expiry and least-recently-used eviction. Not thread-safe
    (one event loop per process touches it)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[str, tuple[float, Entry]] = OrderedDict()

    def get(self, key: str) -> Entry | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[0] < time.monotonic():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return item[1]

    def set(self, key: str, value: Entry, ttl: float) -> None:
        if self.max_entries <= 0 or ttl <= 0:
            return
        self._data[key] = (time.monotonic() + ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def delete(self, *keys: str) -> None:
        for key in keys:
            self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class AuthCache:
    """L1 + L2 for user records and sessions, with invalidation hooks for the listener."""

    def __init__(self, settings: Settings, redis: RedisLink, metrics: Metrics) -> None:
        self._settings = settings
        self._redis = redis
        self._metrics = metrics
        self.l1 = L1Cache(settings.l1_max_entries if settings.enable_auth_cache else 0)
        self.ttl = float(settings.cache_ttl)
        self.l1_enabled = settings.enable_auth_cache and settings.l1_max_entries > 0
        key = settings.cache_signing_key
        self._signer = L2Signer(key.get_secret_value().encode("utf-8", "surrogatepass")) if key else None
        self.l2_off_reason: str | None = None
        if not settings.enable_query_cache:
            self.l2_off_reason = "PHOENIX_ENABLE_QUERY_CACHE=false"
        elif not redis.configured:
            self.l2_off_reason = "REDIS_URL is empty"
        elif self._signer is None:
            self.l2_off_reason = "PHOENIX_CACHE_SIGNING_KEY is not set"
        self.l2_enabled = self.l2_off_reason is None
        self.generation = 0
        self.listening = False  # set by the invalidation listener
        # L2 is read only after a full sweep that followed the latest (re)connect or failed delete.
        self._l2_swept = False
        self._sweeps_wanted = 0  # bumped by every reason to sweep; a pass counts if it did not move
        self._sweep_task: asyncio.Task[None] | None = None
        self._last_reject_log = -REJECT_LOG_INTERVAL

    # --- gates ---
    @property
    def use_l1(self) -> bool:
        return self.l1_enabled and self.listening

    @property
    def use_l2(self) -> bool:
        return self.l2_enabled and self.listening and self._l2_swept and self._redis.available()

    def degraded_lookup(self) -> None:
        """A lookup that would have used the caches went to PostgreSQL because the listener is down."""
        if (self.l1_enabled or self.l2_enabled) and not self.listening:
            self._metrics.degrade("listener")

    # --- shared L1 -> L2 lookup ---
    def _l1(self, key: str, kind: type[_R]) -> _R | None:
        """The L1 half of a lookup (synchronous: a hit needs no await). Counts an L1 hit as an
        answered lookup; on a miss the caller must go on with `_l2` (which counts the lookup)."""
        if not self.use_l1:
            return None
        record = self.l1.get(key)
        if not isinstance(record, kind):  # None; the key prefix names the kind, so nothing else
            record = None
            self._metrics.cache("l1", "miss")
        else:
            self._metrics.l1_hit()
        return record

    async def _l2(
        self, key: str, decode: Callable[[Any], _R], l1_ttl: Callable[[_R], float]
    ) -> tuple[_R | None, int]:
        """The rest of a lookup after an L1 miss: L2 (an L2 hit refills L1 for `l1_ttl(record)`
        unless an invalidation raced the read), else a miss for PostgreSQL to answer."""
        if self.use_l2:
            generation = self.generation
            raw = await self._redis.call(lambda c: c.get(L2_PREFIX + key))
            if raw is UNAVAILABLE:
                self._metrics.cache("l2", "error")
            elif raw is None:
                self._metrics.cache("l2", "miss")
            else:
                decoded = await self._open(key, cast(bytes, raw), decode)  # no decode_responses
                if decoded is not None:
                    self._metrics.cache("l2", "hit")
                    if self.use_l1 and generation == self.generation:
                        self.l1.set(key, decoded, l1_ttl(decoded))
                    self._metrics.lookup(True)
                    return decoded, 1
                self._metrics.cache("l2", "miss")
        self._metrics.lookup(False)
        return None, 0

    async def _open(self, key: str, raw: bytes, decode: Callable[[Any], _R]) -> _R | None:
        """The record in an L2 value, or None (counted, logged at most every 10 s, and the value
        deleted) when its seal does not verify or it does not decode."""
        assert self._signer is not None  # L2 is enabled only with a key
        try:
            return decode(self._signer.open(L2_PREFIX + key, raw))
        except Refused as exc:
            reason = exc.reason
        except (ValueError, TypeError, IndexError):
            reason = "malformed"
        kind = "session" if key.startswith("s:") else "user"
        self._metrics.l2_reject(kind, reason)
        now = time.monotonic()
        if now - self._last_reject_log >= REJECT_LOG_INTERVAL:
            self._last_reject_log = now
            log.warning(
                "L2 value refused, served from PostgreSQL",
                extra={
                    "fields": {
                        "kind": kind,
                        "reason": reason,
                        "refused_total": self._metrics.stats.l2_rejected,
                    }
                },
            )
        await self._redis.call(lambda c: c.unlink(L2_PREFIX + key))
        return None

    # --- users ---
    def user_by_email_l1(self, email: str) -> UserRecord | None:
        """Login lookup: L1 only (L2 holds no hashes)."""
        if not self.use_l1:
            self.degraded_lookup()
            self._metrics.lookup(False)
            return None
        record = self.l1.get("e:" + email)
        if not isinstance(record, UserRecord):
            record = None
        self._metrics.cache("l1", "miss" if record is None else "hit")
        self._metrics.lookup(record is not None)
        return record

    def fill_login_record(self, record: UserRecord, generation: int) -> None:
        if self.use_l1 and generation == self.generation:
            self.l1.set("e:" + record.email.lower(), record, self.ttl)

    def user_by_id_l1(self, user_id: str) -> UserRecord | None:
        """Session-check user lookup, L1 half (no await on a hit); on None go on with `user_by_id_l2`."""
        return self._l1("u:" + user_id, UserRecord)

    async def user_by_id_l2(self, user_id: str) -> tuple[UserRecord | None, int]:
        """L2 after an L1 miss. Returns (record or None, cache hits)."""
        return await self._l2("u:" + user_id, UserRecord.from_l2, self._user_ttl)

    def _user_ttl(self, record: UserRecord) -> float:
        return self.ttl

    async def fill_user(self, record: UserRecord, generation: int) -> None:
        stripped = record.without_hash()
        if self.use_l1 and generation == self.generation:
            self.l1.set("u:" + record.id, stripped, self.ttl)
        if self.use_l2 and generation == self.generation:
            assert self._signer is not None
            key = L2_PREFIX + "u:" + record.id
            payload = self._signer.seal(key, stripped.to_l2(), self.ttl)
            await self._redis.call(lambda c: c.set(key, payload, ex=int(self.ttl)))

    # --- sessions ---
    def session_l1(self, hex_hash: str) -> SessionRecord | None:
        """Session lookup, L1 half (no await on a hit); on None go on with `session_l2`."""
        return self._l1("s:" + hex_hash, SessionRecord)

    async def session_l2(self, hex_hash: str) -> tuple[SessionRecord | None, int]:
        """L2 after an L1 miss. Returns (record or None, cache hits)."""
        return await self._l2("s:" + hex_hash, SessionRecord.from_l2, self._session_ttl)

    def _session_ttl(self, record: SessionRecord) -> float:
        return min(self.ttl, record.expires_at - time.time())

    async def fill_session(self, hex_hash: str, record: SessionRecord, generation: int) -> None:
        ttl = self._session_ttl(record)
        if ttl <= 0:
            return
        if self.use_l1 and generation == self.generation:
            self.l1.set("s:" + hex_hash, record, ttl)
        if self.use_l2 and generation == self.generation:
            assert self._signer is not None
            key = L2_PREFIX + "s:" + hex_hash
            payload = self._signer.seal(key, record.to_l2(), ttl)
            await self._redis.call(lambda c: c.set(key, payload, ex=max(1, int(ttl))))

    # --- invalidation ---
    def drop_user_l1(self, user_id: str | None, email: str | None) -> list[str]:
        """Drop a user from L1 at once; return the L2 keys the caller must delete."""
        self.generation += 1
        if email:
            self.l1.delete("e:" + email.lower())
        if user_id:
            self.l1.delete("u:" + user_id)
            return [L2_PREFIX + "u:" + user_id] if self.l2_enabled else []
        return []

    def drop_session_l1(self, hex_hash: str) -> list[str]:
        self.generation += 1
        self.l1.delete("s:" + hex_hash)
        return [L2_PREFIX + "s:" + hex_hash] if self.l2_enabled else []

    async def delete_l2(self, keys: list[str]) -> None:
        if keys:
            if await self._redis.call(lambda c: c.unlink(*keys)) is UNAVAILABLE:
                # The invalidated values may still be in Redis: read no L2 until all are swept.
                log.warning("L2 delete failed, L2 unused until swept", extra={"fields": {"keys": len(keys)}})
                self.require_sweep()
            # A lookup that read L2 before this delete landed may have refilled L1 with the stale
            # value meanwhile (its generation was taken after the drop): drop those L1 keys again,
            # and bump the generation so lookups still in flight do not fill either.
            self.generation += 1
            self.l1.delete(*(key[len(L2_PREFIX) :] for key in keys))

    async def invalidate_user(self, user_id: str | None, email: str | None) -> None:
        await self.delete_l2(self.drop_user_l1(user_id, email))

    async def invalidate_sessions(self, hex_hashes: list[str]) -> None:
        """Drop sessions from L1 at once, then delete them from L2 in one command."""
        await self.delete_l2([key for hex_hash in hex_hashes for key in self.drop_session_l1(hex_hash)])

    def listener_down(self) -> None:
        """Stop serving from caches: notifications may be lost from now on."""
        self.listening = False
        self._l2_swept = False
        self.generation += 1
        self.l1.clear()

    def listener_up(self) -> None:
        """Notifications flow again: start from an empty L1 and sweep L2 before trusting it."""
        self.generation += 1
        self.l1.clear()
        self.listening = True
        if self.l2_enabled:
            self.require_sweep()
        else:
            self._l2_swept = True

    def require_sweep(self) -> None:
        """Stop reading L2 now; read it again once a full sweep has run after this call."""
        self._l2_swept = False
        self._sweeps_wanted += 1
        if self.listening and (self._sweep_task is None or self._sweep_task.done()):
            self._sweep_task = asyncio.create_task(self._sweep_l2(), name="phoenix-l2-sweep")

    async def _sweep_l2(self) -> None:
        """Delete our L2 keys (they may have missed invalidations while nobody listened, or a
        delete failed).

        Runs until one full SCAN pass succeeds with no new reason to sweep having come up during
        it; a Redis outage retries a second later. Until then this process does not read L2 (it
        serves from PostgreSQL)."""
        while self.listening:
            wanted = self._sweeps_wanted
            deleted = await self._sweep_pass()
            if deleted is None:
                await asyncio.sleep(SWEEP_RETRY_SECONDS)
                continue
            if wanted != self._sweeps_wanted:
                continue
            self._metrics.invalidations.labels("flush").inc()
            log.info("L2 swept", extra={"fields": {"deleted": deleted}})
            self._l2_swept = self.listening
            return

    async def _sweep_pass(self) -> int | None:
        cursor: int = 0
        deleted = 0
        while True:
            result = await self._redis.call(_scan(cursor))
            if result is UNAVAILABLE:
                return None
            cursor, keys = result
            if keys:
                if await self._redis.call(_unlink(keys)) is UNAVAILABLE:
                    return None
                deleted += len(keys)
            if cursor == 0:
                return deleted

    async def close(self) -> None:
        if self._sweep_task is not None:
            self._sweep_task.cancel()

    def stats(self) -> dict[str, Any]:
        return {
            "l1Entries": len(self.l1),
            "l1MaxEntries": self.l1.max_entries,
            "l1Enabled": self.l1_enabled,
            "l2Enabled": self.l2_enabled,
            "l2DisabledReason": self.l2_off_reason,
            "ttlSeconds": self.ttl,
            "listening": self.listening,
            "l2Ready": self._l2_swept,
            "generation": self.generation,
        }


def _scan(cursor: int) -> Callable[[Redis], Awaitable[tuple[int, list[bytes | str]]]]:
    """One SCAN step of the L2 sweep from `cursor`."""

    def scan(client: Redis) -> Awaitable[tuple[int, list[bytes | str]]]:
        return client.scan(cursor, match=L2_SWEEP_PATTERN, count=1000)

    return scan


def _unlink(keys: list[bytes | str]) -> Callable[[Redis], Awaitable[int]]:
    def unlink(client: Redis) -> Awaitable[int]:
        return client.unlink(*keys)

    return unlink
