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

Redis unreachable: the same policy runs on a bounded in-process table (`throttle_state.LocalTable`), kept warm
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
import math
import time
from collections.abc import Coroutine
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from .errors import Throttled
from .redislink import UNAVAILABLE, RedisLink
from .settings import Settings
from .throttle_state import (
    KNOWN_MAX_ADDRESSES,
    Keys,
    LocalTable,
    Policy,
    Reservation,
    backoff_ms,
)

__all__ = ["RESERVE_LUA", "SETTLE_LUA", "Keys", "Policy", "Reservation", "Throttle", "backoff_ms"]

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


class Throttle:
    """Reserve an attempt before verifying (`reserve`), then settle it: `failed` (part of a
    failure's fixed cost), `succeeded` or `released` (refunds; see `_settle`)."""

    def __init__(self, settings: Settings, redis: RedisLink) -> None:
        self._p = Policy.from_settings(settings)
        self._redis = redis
        self._local = LocalTable(self._p)
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

    def clean(self, keys: Keys) -> bool:
        """Whether this process has seen no failure and no lock of the account or the address.

        A login may then hash while its reservation is in flight (login.py): a reservation that
        Redis refuses is remembered here (`mirror_lock`), as are the counts of every attempt that
        follows a failure (`mirror`), so an attacker's locked or failing keys cost at most one early
        hash per process before they stop being clean."""
        return self._local.clean(keys, time.time())

    async def reserve(self, keys: Keys) -> Reservation:
        """Count this attempt on the account (and the address) of `keys` (`Keys.of(email,
        address)`) or raise Throttled while locked."""
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

        async def bump(c: Redis) -> list[Any]:
            pipe = c.pipeline(transaction=False)
            pipe.incr(r.keys.pair)
            pipe.expire(r.keys.pair, window)
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
