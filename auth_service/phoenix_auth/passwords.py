"""Password hashing: argon2id for new hashes, bcrypt accepted from existing NextAuth/Prisma tables.

The hashing functions are synchronous and CPU-bound on purpose: argon2-cffi and bcrypt release
the GIL, so callers run them in a thread pool sized to the cores (`PasswordHasher.verify_async`)
and one process reaches the machine's hashing limit without blocking the event loop.

Failures cost the same for every account. A verify's time depends on the stored hash's kind:
bcrypt cost 10 takes ~4x and cost 12 ~20x our argon2id, and an unknown email verifies against a
dummy argon2id hash. Right after adopting a NextAuth table every real account is bcrypt, so
timing alone would tell real emails apart. Wrapping legacy hashes (argon2id over the bcrypt
output) cannot help: checking a password against it still runs bcrypt at its cost first. So a
*failed* verify is held until the slowest hash kind present in the users table would have
finished: hold = this verify's run time x (slowest kind's typical run / this kind's typical run)
- the run time. The ratio is measured here (median of recent runs per kind, one calibration run
per kind at start-up), so the hold tracks CPU load the way the real work does; no fixed sleep.
Successful verifies are never held (the caller knew the password). Which kinds are present comes
from a census of the table (`Database.hash_kinds`, at start-up and hourly) and from every
hash this process verifies. A correct login upgrades a legacy hash to argon2id (`needs_rehash`),
so the hold shrinks to nothing as the table converges.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import statistics
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import bcrypt
from argon2 import PasswordHasher as _Argon2
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.low_level import hash_secret

from .errors import Overloaded
from .hashpool import HashClient, HashServiceUnavailable, HashStartedLate
from .settings import Settings

log = logging.getLogger("phoenix_auth.passwords")

BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
ARGON2_PREFIX = "$argon2"
ARGON2_TYPES = {"argon2id": Type.ID, "argon2i": Type.I, "argon2d": Type.D}
RUN_HISTORY = 32  # recent run times kept per hash kind
MIN_HOLD = 0.0005  # seconds; shorter holds are not worth a timer
# Kinds too slow to calibrate at start-up (a real verify of one still measures it).
MAX_CALIBRATED_BCRYPT_COST = 14
MAX_CALIBRATED_ARGON2_KIB_PASSES = 1024 * 1024 * 4


def hash_kind(stored: str) -> str | None:
    """`bcrypt$<cost>` or `<variant>$v=<n>$m=..,t=..,p=..` for a hash (or for the census's prefix
    of one: `$2b$12$`, `$argon2id$v=19$m=19456,t=2,p=1`); None for anything else."""
    parts = stored.split("$")
    if stored.startswith(BCRYPT_PREFIXES):
        if len(parts) >= 3 and parts[2].isascii() and parts[2].isdigit():
            return f"bcrypt${int(parts[2])}"
        return None
    if stored.startswith(ARGON2_PREFIX) and len(parts) >= 3 and parts[1] in ARGON2_TYPES:
        if parts[2].startswith("v=") and len(parts) >= 4:
            return f"{parts[1]}${parts[2]}${parts[3]}"
        return f"{parts[1]}$v=16${parts[2]}"
    return None


def _argon2_params(kind: str) -> tuple[Type, int, int, int, int] | None:
    """(type, version, memory KiB, time cost, parallelism) of an argon2 kind."""
    try:
        variant, version, params = kind.split("$")
        values = dict(part.split("=", 1) for part in params.split(","))
        return ARGON2_TYPES[variant], int(version[2:]), int(values["m"]), int(values["t"]), int(values["p"])
    except (KeyError, ValueError):
        return None


def _sample_hash(kind: str) -> str | None:
    """A hash of a random password of the given kind, or None when it is not one we calibrate."""
    secret = secrets.token_bytes(16)
    if kind.startswith("bcrypt$"):
        cost = int(kind.split("$")[1])
        if not 4 <= cost <= MAX_CALIBRATED_BCRYPT_COST:
            return None
        return bcrypt.hashpw(secret, bcrypt.gensalt(rounds=cost)).decode("ascii")
    params = _argon2_params(kind)
    if params is None:
        return None
    type_, version, memory, passes, lanes = params
    if memory * passes > MAX_CALIBRATED_ARGON2_KIB_PASSES or lanes > 64:
        return None
    return hash_secret(
        secret, secrets.token_bytes(16), passes, memory, lanes, 32, type_, version=version
    ).decode("ascii")


class Checked(NamedTuple):
    """A verify's verdict and the seconds its hash ran on a hashing thread."""

    ok: bool
    run: float


class PasswordHasher:
    """Hash and verify passwords with the configured argon2id parameters; hold failures to the
    slowest hash kind present (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self._argon2 = _Argon2(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            type=Type.ID,
        )
        self._runs: dict[str, deque[float]] = {}
        # A hash of a random password with our parameters: verifying against it costs exactly
        # what a real verify costs, so an unknown email is indistinguishable by timing.
        start = time.perf_counter()
        self._dummy_hash = self._argon2.hash(secrets.token_urlsafe(16))
        self.current_kind = hash_kind(self._dummy_hash) or "argon2id"
        self._observe(self.current_kind, time.perf_counter() - start)
        self._present: set[str] = {self.current_kind}
        # With several workers the server's supervisor hashes for all of them (hashpool.py); one
        # thread is kept here only for the rare local call (none on the login path).
        self._remote = HashClient(settings.hash_socket) if settings.hash_socket else None
        self._local_jobs = 0  # jobs in this process's pool, queued or running (the event loop counts)
        threads = 1 if self._remote is not None else settings.hash_threads
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hash")

    def queue_depth(self) -> int:
        """Hash jobs waiting for or running in this process's pool: the server's hashing queue
        with one worker (login admission; with several, hashpool.DepthGauge reads the server's)."""
        return self._local_jobs

    # --- hashing and verifying (synchronous: run them in the pool) ---
    def hash(self, password: str) -> str:
        return self._argon2.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """True when `password` matches; never raises for a malformed or foreign hash."""
        return self._check(stored_hash, password)[0]

    def _check(self, stored_hash: str | None, password: str) -> tuple[bool, str]:
        """(matches, the kind of hash whose work was done): a hash we cannot use costs a dummy verify."""
        if stored_hash and stored_hash.startswith(BCRYPT_PREFIXES):
            try:
                return bcrypt.checkpw(password.encode("utf-8")[:72], stored_hash.encode("ascii")), (
                    hash_kind(stored_hash) or self.current_kind
                )
            except ValueError:  # a malformed bcrypt hash: rejected before any work
                pass
        elif stored_hash and stored_hash.startswith(ARGON2_PREFIX):
            try:
                return self._argon2.verify(stored_hash, password), hash_kind(stored_hash) or self.current_kind
            except VerifyMismatchError:
                return False, hash_kind(stored_hash) or self.current_kind
            except (VerificationError, InvalidHashError):
                pass
        self.dummy_verify(password)
        return False, self.current_kind

    def _timed_check(self, stored_hash: str | None, password: str) -> tuple[bool, str, float]:
        start = time.perf_counter()
        ok, kind = self._check(stored_hash, password)
        return ok, kind, time.perf_counter() - start

    def dummy_verify(self, password: str) -> None:
        """Spend one verify's worth of work for a user that does not exist."""
        with contextlib.suppress(VerifyMismatchError, VerificationError, InvalidHashError):
            self._argon2.verify(self._dummy_hash, password)

    def needs_rehash(self, stored_hash: str) -> bool:
        """True for bcrypt hashes and for argon2 hashes made with other parameters."""
        if stored_hash.startswith(ARGON2_PREFIX):
            try:
                return self._argon2.check_needs_rehash(stored_hash)
            except InvalidHashError:
                return True
        return True

    # --- async entry points ---
    async def verify_async(self, stored_hash: str | None, password: str) -> bool:
        """Verify in the pool; a failure returns only after `failure_hold` more seconds."""
        return (await self.check_async(stored_hash, password)).ok

    async def check_async(
        self, stored_hash: str | None, password: str, *, start_within: float | None = None
    ) -> Checked:
        """verify_async, also saying how long the hash itself ran (the rest of the wait was the
        queue for a hashing thread, the hop to it, and a failure's hold). With `start_within`
        (seconds), a verify no hashing thread has started by then is not run: Overloaded."""
        start_by = None if start_within is None else time.monotonic() + start_within
        checked = await self._run("check", self._timed_check, stored_hash, password, start_by=start_by)
        ok, kind, run = bool(checked[0]), str(checked[1]), float(checked[2])
        self._observe(kind, run)
        if kind not in self._present:
            self._present.add(kind)
        if not ok:
            hold = self.failure_hold(kind, run)
            if hold > MIN_HOLD:
                await asyncio.sleep(hold)
        return Checked(ok, run)

    async def hash_async(self, password: str) -> str:
        return str(await self._run("hash", self.hash, password))

    async def _run(
        self, op: str, local: Callable[..., Any], *args: Any, start_by: float | None = None
    ) -> Any:
        """`local(*args)` in this process's pool, or operation `op` on the pod's hash service;
        either way not run when no thread takes it by `start_by` (Overloaded)."""
        try:
            if self._remote is None:
                self._local_jobs += 1
                try:
                    return await self._run_local(start_by, local, *args)
                finally:
                    self._local_jobs -= 1
            result = await self._remote.call(op, *args, start_by=start_by)
        except HashStartedLate:
            raise Overloaded(retry_after=1) from None
        except HashServiceUnavailable as exc:
            log.warning("hash service unavailable", extra={"fields": {"error": str(exc)}})
            raise Overloaded(retry_after=1) from None
        return tuple(result) if isinstance(result, list) else result

    async def _run_local(self, start_by: float | None, local: Callable[..., Any], *args: Any) -> Any:
        """`local(*args)` on this process's pool; a job no thread has started by `start_by` is
        taken off the queue then (HashStartedLate). The event loop's clock is time.monotonic()."""
        job = self._executor.submit(local, *args)
        if start_by is None:
            return await asyncio.wrap_future(job)
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = job.cancel()  # False once a thread has started it: it runs to the end

        timer = asyncio.get_running_loop().call_at(start_by, expire)
        try:
            return await asyncio.wrap_future(job)
        except asyncio.CancelledError:
            if expired:
                raise HashStartedLate() from None
            raise
        finally:
            timer.cancel()

    def operations(self) -> dict[str, Callable[..., Any]]:
        """What the pod's hash service runs for its workers (hashpool.HashServer)."""
        return {"check": self._timed_check, "hash": self.hash, "sample": _sample_hash}

    # --- failure hold ---
    def _observe(self, kind: str, seconds: float) -> None:
        runs = self._runs.get(kind)
        if runs is None:
            runs = self._runs[kind] = deque(maxlen=RUN_HISTORY)
        runs.append(seconds)

    def fastest_run(self, kind: str) -> float | None:
        """The fastest of recent run times of `kind`: a verify as it runs with the cores to
        itself, or as near to that as the load lets one run (None before the first)."""
        runs = self._runs.get(kind)
        return min(runs) if runs else None

    def wait_unit(self) -> float | None:
        """What a login's wait for a hashing thread is measured in: the fastest recent verify of
        the slowest hash kind present. While legacy bcrypt hashes are present a thread can be
        busy for many argon2 verifies with one of them, and a login behind it must not be shed
        for that; once they are gone, it is one argon2 verify."""
        return self.fastest_run(self._slowest_kind())

    def _slowest_kind(self) -> str:
        """The present hash kind whose recent verifies take longest (the failure hold's target)."""
        return max(self._present, key=lambda kind: self.typical_run(kind) or 0.0)

    def typical_run(self, kind: str) -> float | None:
        """The median of recent run times of `kind` (None before the first)."""
        runs = self._runs.get(kind)
        return statistics.median(runs) if runs else None

    def failure_hold(self, kind: str, run: float) -> float:
        """Seconds to hold a failed verify of `kind` that ran `run` seconds, so that it ends when
        a verify of the slowest kind present would have (scaled by the load `run` reflects)."""
        own = self.typical_run(kind)
        if not own:
            return 0.0
        slowest = self.typical_run(self._slowest_kind()) or own
        return run * (slowest / own - 1) if slowest > own else 0.0

    @property
    def present_kinds(self) -> frozenset[str]:
        return frozenset(self._present)

    async def set_present_kinds(self, prefixes: Iterable[str]) -> None:
        """Take the users table's census (hash prefixes) and calibrate any kind not measured yet."""
        kinds = {k for k in map(hash_kind, prefixes) if k is not None}
        kinds.add(self.current_kind)
        for kind in sorted(kinds - self._runs.keys()):
            start = time.perf_counter()
            try:
                sample = await self._run("sample", _sample_hash, kind)
            except ValueError:
                sample = None
            if sample is None:
                log.warning("hash kind not calibrated", extra={"fields": {"kind": kind}})
                continue
            self._observe(kind, time.perf_counter() - start)  # hashing is one verify's work
            _, measured, run = await self._run("check", self._timed_check, sample, "x")
            self._observe(measured, run)
        self._present = kinds

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def aclose(self) -> None:
        """close(), and the connection to the pod's hash service."""
        self.close()
        if self._remote is not None:
            await self._remote.close()


CENSUS_INTERVAL = 3600.0  # seconds between censuses of the users table's hash kinds
CENSUS_RETRY = 60.0  # seconds after a failed census


async def keep_kinds_current(
    hasher: PasswordHasher, census: Callable[[], Awaitable[list[str]]], first_done: asyncio.Event
) -> None:
    """Run the hash-kind census now and then every CENSUS_INTERVAL (CENSUS_RETRY after a failure);
    `first_done` is set after the first attempt, whatever its outcome (start-up waits for it)."""
    while True:
        try:
            await hasher.set_present_kinds(await census())
            delay = CENSUS_INTERVAL
            log.info("hash kinds", extra={"fields": {"kinds": sorted(hasher.present_kinds)}})
        except Exception as exc:
            delay = CENSUS_RETRY
            log.warning("hash kind census failed", extra={"fields": {"error": type(exc).__name__}})
        first_done.set()
        await asyncio.sleep(delay)
