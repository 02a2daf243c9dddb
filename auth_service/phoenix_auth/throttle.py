"""Login throttling: each attempt is reserved before any hashing, per account and per address.

Policy (numbers are the defaults, `PHOENIX_THROTTLE_*`):

* **Account** (all addresses together; the key is a SHA-256 of the lower-cased email, so Redis
  holds no addresses and unknown emails are throttled exactly like real ones): 5 free failures,
  then a lock of 1 s doubling per failure up to 900 s, and 900 s from 20 failures on (NIST
  800-63B allows at most 100). While an account is locked every attempt on it is refused, the
  right password included: that is the price of stopping a distributed guess at one account.
* **Address** (an IPv4 address or an IPv6 /64, see addresses.py): failures on accounts that
  have *not* logged in from this address within `throttle_known_address_ttl` (30 days) count;
  past 50 in the window the address backs off like an account (1 s doubling, up to 900 s). While
  it is backed off, attempts from it on such accounts are refused, which is what stops credential
  stuffing (many accounts, one address). Accounts that have logged in from this address are never
  refused because of it, so a flood from one address, or from everyone behind one proxy, does
  not lock their owners out; their own account limit still applies. A success gives back the
  failures of its account from this address, so users who mistype and then log in do not push a
  shared address over its limit.
* **Reservation**: one Redis script checks the locks and counts the attempt as a failure *before*
  the password is verified, setting the lock the attempt would cause. So however many attempts
  arrive at once, at most `free + 1` are verified before an account is locked (and then one per
  lock period). A success refunds its reservation (and the failures it saw); so does an attempt
  that ended without a verdict (503). A clean login's refund is not waited for (it is off the
  critical path: the reservation is the login's one Redis round trip); after earlier failures
  it is, so the lock this attempt set is lifted before the answer. The other side of the
  coin: at most `free + 1` logins of one account can be in progress at once (a 7th within the
  same moment gets 429 with `Retry-After: 1`).

Redis unreachable: the same policy runs on a bounded in-process table (`_LocalTable`), kept warm
from Redis's answers, so counts seen before an outage still hold during it. Its guarantee is per
process: each process admits at most `free + 1` concurrent attempts per account per lock period,
continuing from the last counts Redis gave it; an attacker who also breaks Redis gains at most
that per process (worker x replica), never unlimited parallel guesses.

`securityRisk` (0..1) = the larger of account failures / lockout and address failures / (2 x the
address allowance), both as seen before this attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from redis.commands.core import AsyncScript

from .addresses import throttle_bucket
from .errors import Throttled
from .redislink import UNAVAILABLE, RedisLink
from .settings import Settings

LOCAL_MAX_KEYS = 100_000  # entries of each in-process table (LRU beyond)
KNOWN_MAX_ADDRESSES = 16  # known addresses kept per account (the oldest is forgotten)
KNOWN_REFRESH = 86400  # seconds: a known mark older than this is rewritten by the next success
CLOSE_WAIT = 2.0  # seconds shutdown waits for unsettled refunds

_BACKOFF_LUA = """
local function backoff(n, free, lockout, base, cap)
  if lockout > 0 and n >= lockout then return cap end
  if n <= free then return 0 end
  return math.min(cap, base * 2 ^ math.min(n - free - 1, 40))
end
local function lock(key, ms)
  if ms > 0 then redis.call('SET', key, '1', 'PX', math.max(1, math.floor(ms))) end
end
"""

# KEYS: account, account lock, address, address lock, known
# ARGV: now (s), window (s), free, lockout, base (ms), cap (ms), address free, known ttl (s), bucket
# -> {0, wait ms, 1 account | 2 address} refused | {1, account count, address count, known 0/1, known since}
RESERVE_LUA = (
    _BACKOFF_LUA
    + """
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local base, cap = tonumber(ARGV[5]), tonumber(ARGV[6])
local wait = redis.call('PTTL', KEYS[2])
if wait > 0 then return {0, wait, 1} end
local known_at = tonumber(redis.call('HGET', KEYS[5], ARGV[9]) or '0')
local known = known_at > 0 and now - known_at < tonumber(ARGV[8])
if not known then
  wait = redis.call('PTTL', KEYS[4])
  if wait > 0 then return {0, wait, 2} end
end
local a = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], window)
lock(KEYS[2], backoff(a, tonumber(ARGV[3]), tonumber(ARGV[4]), base, cap))
local i
if known then
  i = tonumber(redis.call('GET', KEYS[3]) or '0')
else
  i = redis.call('INCR', KEYS[3])
  redis.call('EXPIRE', KEYS[3], window)
  lock(KEYS[4], backoff(i, tonumber(ARGV[7]), 0, base, cap))
end
return {1, a, i, known and 1 or 0, known_at}
"""
)

# KEYS: account, account lock, address, address lock, pair, known
# ARGV: account refund, address refund (0 none, 1 this attempt, 2 this attempt + the pair's
#       failures), free, address free, mark known 0/1, now (s), known ttl (s), bucket, known max
SETTLE_LUA = """
local function refund(key, lock, n, free)
  if n <= 0 then return end
  local left = redis.call('DECRBY', key, n)
  if left <= 0 then redis.call('DEL', key) end
  if left <= free then redis.call('DEL', lock) end
end
refund(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[3]))
if ARGV[2] ~= '0' then
  local n = 1
  if ARGV[2] == '2' then
    n = n + tonumber(redis.call('GET', KEYS[5]) or '0')
    redis.call('DEL', KEYS[5])
  end
  refund(KEYS[3], KEYS[4], n, tonumber(ARGV[4]))
end
if ARGV[5] == '1' then
  redis.call('HSET', KEYS[6], ARGV[8], ARGV[6])
  redis.call('EXPIRE', KEYS[6], ARGV[7])
  if redis.call('HLEN', KEYS[6]) > tonumber(ARGV[9]) then
    local all = redis.call('HGETALL', KEYS[6])
    local oldest, oldest_at = nil, nil
    for j = 1, #all, 2 do
      local at = tonumber(all[j + 1])
      if oldest_at == nil or at < oldest_at then oldest, oldest_at = all[j], at end
    end
    redis.call('HDEL', KEYS[6], oldest)
  end
end
return 1
"""


def backoff_ms(failures: int, free: int, lockout: int, base_ms: float, cap_ms: float) -> float:
    """Milliseconds to lock after `failures` counted attempts (0 = no lock); lockout 0 = none.
    The same function as `backoff` in the Redis scripts (a test holds the two equal)."""
    if lockout > 0 and failures >= lockout:
        return cap_ms
    if failures <= free:
        return 0.0
    return min(cap_ms, base_ms * 2 ** min(failures - free - 1, 40))


def _lock_ms(value: float) -> int:
    return max(1, math.floor(value))


@dataclass(frozen=True, slots=True)
class Policy:
    """The throttle's numbers, from Settings."""

    free: int
    lockout: int
    base_ms: float
    cap_ms: float
    window: int
    address_free: int
    known_ttl: int

    @classmethod
    def from_settings(cls, s: Settings) -> Policy:
        return cls(
            free=s.throttle_free_failures,
            lockout=s.throttle_lockout_failures,
            base_ms=s.throttle_base_delay * 1000,
            cap_ms=s.throttle_max_delay * 1000,
            window=s.throttle_window,
            address_free=s.throttle_ip_free_failures,
            known_ttl=s.throttle_known_address_ttl,
        )

    def account_lock_ms(self, count: int) -> float:
        return backoff_ms(count, self.free, self.lockout, self.base_ms, self.cap_ms)

    def address_lock_ms(self, count: int) -> float:
        return backoff_ms(count, self.address_free, 0, self.base_ms, self.cap_ms)

    def is_known(self, known_at: float, now: float) -> bool:
        return known_at > 0 and now - known_at < self.known_ttl


@dataclass(frozen=True, slots=True)
class Keys:
    """The Redis keys of one (account, address) pair."""

    account: str  # failures of the account, from anywhere
    address: str  # failures from the address on accounts not known from it
    pair: str  # failures of the account from the address (refunded to the address on success)
    known: str  # {address bucket: epoch seconds of the last success from it}
    bucket: str

    @classmethod
    def of(cls, email: str, address: str) -> Keys:
        digest = hashlib.sha256(email.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        bucket = throttle_bucket(address)
        return cls(
            account=f"phoenix:t:a:{digest}",
            address=f"phoenix:t:ip:{bucket}",
            pair=f"phoenix:t:p:{digest}:{bucket}",
            known=f"phoenix:t:k:{digest}",
            bucket=bucket,
        )


@dataclass(frozen=True, slots=True)
class Reservation:
    """One admitted attempt, counted as a failure until it is settled."""

    keys: Keys
    account_count: int  # the account's count including this attempt
    address_count: int  # the address's count (including this attempt when counted on it)
    counted_on_address: bool  # False when the account is known from the address
    known_at: float  # epoch seconds of the account's last success from the address (0: never)
    local: bool  # reserved in the in-process table (Redis unreachable)

    @property
    def account_failures(self) -> int:
        """Failures of the account seen before this attempt."""
        return max(0, self.account_count - 1)

    @property
    def address_failures(self) -> int:
        return max(0, self.address_count - (1 if self.counted_on_address else 0))


class _LocalTable:
    """The policy on in-process dicts (one event loop: every method is atomic). Used while Redis
    is unreachable, and mirrored from every Redis answer so it starts warm."""

    def __init__(self, policy: Policy) -> None:
        self._p = policy
        self._counts: OrderedDict[str, list[float]] = OrderedDict()  # key: [count, expires, locked until]
        self._known: OrderedDict[str, dict[str, float]] = OrderedDict()

    def _entry(self, key: str, now: float) -> list[float]:
        entry = self._counts.get(key)
        if entry is None or (entry[1] < now and entry[2] < now):
            entry = self._counts[key] = [0, 0.0, 0.0]
        else:
            self._counts.move_to_end(key)
        while len(self._counts) > LOCAL_MAX_KEYS:
            self._counts.popitem(last=False)
        return entry

    def _count(self, key: str, now: float) -> int:
        entry = self._counts.get(key)
        return int(entry[0]) if entry is not None and entry[1] >= now else 0

    def _wait(self, key: str, now: float) -> float:
        entry = self._counts.get(key)
        return max(0.0, entry[2] - now) if entry is not None else 0.0

    def _set(self, key: str, count: int, lock_ms: float, now: float) -> None:
        entry = self._entry(key, now)
        entry[0], entry[1] = count, now + self._p.window
        if lock_ms > 0:
            entry[2] = now + _lock_ms(lock_ms) / 1000

    def known_at(self, keys: Keys) -> float:
        return self._known.get(keys.known, {}).get(keys.bucket, 0.0)

    def reserve(self, keys: Keys, now: float) -> Reservation | float:
        """A reservation, or the seconds to wait."""
        wait = self._wait(keys.account, now)
        if wait > 0:
            return wait
        known_at = self.known_at(keys)
        known = self._p.is_known(known_at, now)
        if not known:
            wait = self._wait(keys.address, now)
            if wait > 0:
                return wait
        a = self._count(keys.account, now) + 1
        self._set(keys.account, a, self._p.account_lock_ms(a), now)
        i = self._count(keys.address, now)
        if not known:
            i += 1
            self._set(keys.address, i, self._p.address_lock_ms(i), now)
        return Reservation(keys, a, i, not known, known_at, local=True)

    def mirror(self, reservation: Reservation, now: float) -> None:
        """Take the counts (and the locks they imply) Redis just reported."""
        r = reservation
        self._set(r.keys.account, r.account_count, self._p.account_lock_ms(r.account_count), now)
        lock = self._p.address_lock_ms(r.address_count) if r.counted_on_address else 0.0
        self._set(r.keys.address, r.address_count, lock, now)
        if r.known_at:
            self._mark(r.keys, r.known_at)

    def mirror_lock(self, key: str, wait: float, now: float) -> None:
        """Redis refused because `key` is locked for `wait` more seconds."""
        entry = self._entry(key, now)
        entry[2] = max(entry[2], now + wait)

    def pair_failure(self, keys: Keys, now: float) -> None:
        self._set(keys.pair, self._count(keys.pair, now) + 1, 0.0, now)

    def settle(self, r: Reservation, account_refund: int, address_mode: int, mark: bool, now: float) -> None:
        self._refund(r.keys.account, account_refund, self._p.free, now)
        if address_mode:
            n = 1
            if address_mode == 2:
                n += self._count(r.keys.pair, now)
                self._counts.pop(r.keys.pair, None)
            self._refund(r.keys.address, n, self._p.address_free, now)
        if mark:
            self._mark(r.keys, now)

    def _refund(self, key: str, n: int, free: int, now: float) -> None:
        entry = self._counts.get(key)
        if entry is None or n <= 0:
            return
        entry[0] = max(0, self._count(key, now) - n)
        if entry[0] <= free:
            entry[2] = 0.0

    def _mark(self, keys: Keys, at: float) -> None:
        known = self._known.setdefault(keys.known, {})
        self._known.move_to_end(keys.known)
        known[keys.bucket] = max(at, known.get(keys.bucket, 0.0))
        if len(known) > KNOWN_MAX_ADDRESSES:
            del known[min(known, key=known.__getitem__)]
        while len(self._known) > LOCAL_MAX_KEYS:
            self._known.popitem(last=False)


class Throttle:
    """Reserve an attempt before verifying (`reserve`), then settle it: `failed` (part of a
    failure's fixed cost), `succeeded` or `released` (refunds; see `_settle`)."""

    def __init__(self, settings: Settings, redis: RedisLink) -> None:
        self._p = Policy.from_settings(settings)
        self._redis = redis
        self._local = _LocalTable(self._p)
        self._pending: set[asyncio.Task[Any]] = set()
        client = redis.client if redis is not None else None
        self._reserve_script = AsyncScript(client, RESERVE_LUA) if client is not None else None
        self._settle_script = AsyncScript(client, SETTLE_LUA) if client is not None else None

    @property
    def policy(self) -> Policy:
        return self._p

    def risk(self, r: Reservation) -> float:
        account = r.account_failures / self._p.lockout
        address = r.address_failures / (2 * self._p.address_free)
        return round(min(1.0, max(account, address)), 3)

    async def reserve(self, email: str, address: str) -> Reservation:
        """Count this attempt on the account (and the address) or raise Throttled while locked."""
        keys = Keys.of(email, address)
        now = time.time()
        result = UNAVAILABLE
        if self._reserve_script is not None:
            p, script = self._p, self._reserve_script
            names = (keys.account, keys.account + ":lock", keys.address, keys.address + ":lock", keys.known)
            args = (int(now), p.window, p.free, p.lockout, p.base_ms, p.cap_ms, p.address_free, p.known_ttl)
            result = await self._redis.call(lambda c: script(keys=names, args=(*args, keys.bucket), client=c))
        if result is UNAVAILABLE:
            local = self._local.reserve(keys, now)
            if isinstance(local, Reservation):
                return local
            raise Throttled(retry_after=math.ceil(local))
        if int(result[0]) == 0:
            wait = int(result[1]) / 1000
            self._local.mirror_lock(keys.account if int(result[2]) == 1 else keys.address, wait, now)
            raise Throttled(retry_after=math.ceil(wait))
        reservation = Reservation(
            keys,
            account_count=int(result[1]),
            address_count=int(result[2]),
            counted_on_address=not int(result[3]),
            known_at=float(result[4]),
            local=False,
        )
        self._local.mirror(reservation, now)
        return reservation

    async def failed(self, r: Reservation) -> None:
        """The attempt failed: it stays counted. Remember it against the (account, address) pair
        too, so a later success from there can give it back to the address."""
        if not r.counted_on_address:
            return
        self._local.pair_failure(r.keys, time.time())
        if r.local:
            return
        window = self._p.window

        async def bump(c):  # type: ignore[no-untyped-def]
            pipe = c.pipeline(transaction=False)
            pipe.incr(r.keys.pair).expire(r.keys.pair, window)
            return await pipe.execute()

        await self._redis.call(bump)

    async def succeeded(self, r: Reservation) -> None:
        """The password was right: refund this attempt and the failures it saw, give the
        address back this account's failures from it, and remember the address as known."""
        now = time.time()
        fresh = self._p.is_known(r.known_at, now) and now - r.known_at < KNOWN_REFRESH
        mark = self._p.known_ttl > 0 and not fresh
        await self._settle(r, r.account_count, 2 if r.counted_on_address else 0, mark, now)

    async def released(self, r: Reservation) -> None:
        """The attempt ended without a verdict (e.g. 503): it was not a failure, refund it."""
        await self._settle(r, 1, 1 if r.counted_on_address else 0, False, time.time())

    def _set_a_lock(self, r: Reservation) -> bool:
        """Whether reserving `r` locked the account or the address (only after earlier failures)."""
        return self._p.account_lock_ms(r.account_count) > 0 or (
            r.counted_on_address and self._p.address_lock_ms(r.address_count) > 0
        )

    async def _settle(
        self, r: Reservation, account_refund: int, address_mode: int, mark: bool, now: float
    ) -> None:
        """Apply a refund here and in Redis. Awaited only when this reservation set a lock (there
        were failures before it), so the owner's next attempt is not refused by a lock that a
        refund in flight is about to lift; otherwise detached, off the login's critical path."""
        self._local.settle(r, account_refund, address_mode, mark, now)
        if r.local or self._settle_script is None or not self._redis.available():
            return
        p, script, k = self._p, self._settle_script, r.keys
        keys = (k.account, k.account + ":lock", k.address, k.address + ":lock", k.pair, k.known)
        args = (account_refund, address_mode, p.free, p.address_free, int(mark), int(now), p.known_ttl)
        call = self._redis.call(
            lambda c: script(keys=keys, args=(*args, k.bucket, KNOWN_MAX_ADDRESSES), client=c)
        )
        if self._set_a_lock(r):
            await call
        else:
            self._spawn(call)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def settled(self) -> None:
        """Wait for every detached refund (tests; shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.settled(), CLOSE_WAIT)
