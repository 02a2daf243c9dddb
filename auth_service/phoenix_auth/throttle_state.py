"""The throttle's numbers and state: the backoff schedule, the policy from Settings, the Redis
keys of an (account, address) pair, one reserved attempt, and the in-process table used while
Redis is unreachable. throttle.py runs the same policy in Redis scripts.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass

from .addresses import throttle_bucket
from .settings import Settings

# In-process table sizes (LRU beyond): ~300 bytes per counter, ~200 per known mark, so at most
# ~15 + 4 MB per worker. Clean logins leave no counter here, only their known mark.
LOCAL_MAX_COUNTERS = 50_000
LOCAL_MAX_KNOWN = 20_000
KNOWN_MAX_ADDRESSES = 16  # known addresses kept per account (the oldest is forgotten)


def backoff_ms(failures: int, free: int, lockout: int, base_ms: float, cap_ms: float) -> float:
    """Milliseconds to lock after `failures` counted attempts (0 = no lock); lockout 0 = none.
    The same function as `backoff` in the Redis scripts (a test holds the two equal)."""
    if lockout > 0 and failures >= lockout:
        return cap_ms
    if failures <= free:
        return 0.0
    return min(cap_ms, base_ms * 2.0 ** min(failures - free - 1, 40))


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


class LocalTable:
    """The policy on in-process dicts (one event loop: every method is atomic). Used while Redis
    is unreachable, and mirrored from every Redis answer so it starts warm."""

    def __init__(self, policy: Policy) -> None:
        self._p = policy
        self._counts: OrderedDict[str, list[float]] = OrderedDict()  # key: [count, expires, locked until]
        self._known: OrderedDict[tuple[str, str], float] = OrderedDict()  # (known key, bucket): last success

    def _entry(self, key: str, now: float) -> list[float]:
        entry = self._counts.get(key)
        if entry is None or (entry[1] < now and entry[2] < now):
            entry = self._counts[key] = [0, 0.0, 0.0]
        else:
            self._counts.move_to_end(key)
        while len(self._counts) > LOCAL_MAX_COUNTERS:
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
        return self._known.get((keys.known, keys.bucket), 0.0)

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

    def clean(self, keys: Keys, now: float) -> bool:
        """No failure counted and no lock held here for the account or the address."""
        for key in (keys.account, keys.address):
            entry = self._counts.get(key)
            if entry is not None and ((entry[0] > 0 and entry[1] >= now) or entry[2] > now):
                return False
        return True

    def mirror(self, reservation: Reservation, now: float) -> None:
        """Take the counts (and the locks they imply) Redis just reported: those with failures
        behind them, or already held here (a clean attempt's count is refunded at once)."""
        r = reservation
        if r.account_count > 1 or r.keys.account in self._counts:
            self._set(r.keys.account, r.account_count, self._p.account_lock_ms(r.account_count), now)
        if r.address_count > 1 or r.keys.address in self._counts:
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
        pair = (keys.known, keys.bucket)
        self._known[pair] = max(at, self._known.get(pair, 0.0))
        self._known.move_to_end(pair)
        while len(self._known) > LOCAL_MAX_KNOWN:
            self._known.popitem(last=False)
