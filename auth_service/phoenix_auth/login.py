"""The login use-case: validate input, throttle, look up, verify, rehash, open a session.

Enumeration and timing safety: an unknown email, a disabled account, an account without a
password and a wrong password all end in the same `InvalidCredentials` after the same work —
one throttle reservation, one PostgreSQL lookup (a failure against a cached record is confirmed
in the database), one verify (a dummy argon2id verify with our parameters when there is no usable
hash), one throttle write — and a failed verify is held as long as the slowest hash kind in the
table takes (passwords.py), so a legacy bcrypt account does not stand out by its slower verify.

Throttle safety: the attempt is reserved (counted as a failure) before any verdict is used,
atomically in Redis, so concurrent guesses cannot all pass a check made before any of them is
recorded. The hash itself runs as soon as the hash to verify against is known (at once from L1,
else when the lookup answers) while the reservation is still in flight, when this process has
seen no failure or lock of the account or the address (`Throttle.clean`): a clean login then costs
the longer of the two instead of both, and a locked or failing key still costs no hash (after at
most one per process, the first time Redis refuses a key this process had not seen fail). Such
an early failure ends after lookup + verify + the failure's write whether the account was cached,
uncached or unknown (a cached one's confirmation lookup is then made before the write, not beside
it), as a late one ends after the longer of (lookup, reservation) + verify + write.

Session safety: a clean login whose hash starts at once may open its session while the hash runs
(`_Opening`), so a success answers at its verdict instead of one PostgreSQL round trip later. The
row is committed under a fresh token that is handed out only with a success against the record it
was opened for; any other end of the login discards the row (`Sessions.discard`), after the
answer, so a failure takes as long whether or not a row was opened. Never for a login that waits
for a hashing thread, so a flood of guesses costs the database no early sessions.

Cache safety: the user record may come from L1, but the session INSERT re-checks in PostgreSQL,
in the same statement, that the user is still enabled and still has the hash we verified
against. A stale cache entry therefore can never let a disabled user in or accept an old
password; it only costs one retry from the database.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from .cache import AuthCache
from .db import Database
from .errors import (
    InvalidCredentials,
    InvalidEmail,
    InvalidFieldType,
    MissingField,
    Overloaded,
    PasswordTooLong,
)
from .hashpool import DepthGauge
from .metrics import Metrics
from .passwords import PasswordHasher
from .records import UserRecord
from .sessions import Sessions
from .settings import Settings
from .throttle import Keys, Reservation, Throttle

log = logging.getLogger("phoenix_auth.login")

MAX_EMAIL_LENGTH = 254  # RFC 5321 path limit

# Where a login's record and verdict come from: the L1 record, the overlapped lookup, the early
# verify of a clean attempt, and the cache generation taken before any of them.
_Source = tuple[
    UserRecord | None,
    asyncio.Future[UserRecord | None] | None,
    asyncio.Future[bool] | None,
    int,
]


@dataclass(frozen=True, slots=True)
class Credentials:
    email: str  # stripped and lower-cased
    password: str


@dataclass(frozen=True, slots=True)
class LoginResult:
    user: UserRecord
    token: str
    expires_at: float  # epoch seconds
    security_risk: float
    total_ms: float
    database_ms: float
    verify_ms: float
    cache_hits: int
    throttle_ms: float = 0.0  # the Redis throttle reservation (the refund is not waited for)
    lookup_ms: float = 0.0  # the PostgreSQL user lookups (part of database_ms)
    hash_ms: float = 0.0  # the hash's own run (part of verify_ms; the rest waited for a thread)

    def body(self) -> dict[str, Any]:
        return {
            "user": self.user.public(),
            "session": {
                "sessionId": self.token,
                "expiresAt": int(self.expires_at * 1000),
                "securityRisk": self.security_risk,
            },
            "performance": {
                "totalTime": round(self.total_ms, 2),
                "databaseTime": round(self.database_ms, 2),
                "cacheHits": self.cache_hits,
            },
        }

    def server_timing(self) -> str:
        return (
            f"db;dur={self.database_ms:.2f}, lookup;dur={self.lookup_ms:.2f}, "
            f"verify;dur={self.verify_ms:.2f}, hash;dur={self.hash_ms:.2f}, "
            f"throttle;dur={self.throttle_ms:.2f}, "
            f'cache;desc="hits={self.cache_hits}", total;dur={self.total_ms:.2f}'
        )


@dataclass(slots=True)
class _Spans:
    """Seconds spent per part of one login (for Server-Timing); overlapped parts each count fully."""

    start: float = 0.0  # perf_counter at the login's start
    throttle: float = 0.0
    lookup: float = 0.0
    db: float = 0.0  # session INSERT and rehash
    verify: float = 0.0  # from submitting the verify to its verdict
    hash: float = 0.0  # of which the hash ran on a hashing thread (the rest: queue, hop, hold)


def _utf8_len(value: str) -> int:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates from JSON "\ud800"
        return -1


def parse_credentials(body: object, settings: Settings) -> Credentials:
    """Check the JSON object's fields; every problem is a typed 400 raised before any hashing."""
    assert isinstance(body, dict)
    for name in ("email", "password"):
        if name not in body or body[name] is None:
            raise MissingField(f"The field '{name}' is required.")
        if not isinstance(body[name], str):
            raise InvalidFieldType(f"The field '{name}' must be a string.")
    email, password = body["email"].strip(), body["password"]
    if not email:
        raise MissingField("The field 'email' is required.")
    if not password:
        raise MissingField("The field 'password' is required.")
    size = _utf8_len(password)
    if size < 0:
        raise InvalidFieldType("The field 'password' must be valid Unicode text.")
    if size > settings.max_password_bytes:
        raise PasswordTooLong(f"The password must be at most {settings.max_password_bytes} bytes.")
    if (
        len(email) > MAX_EMAIL_LENGTH
        or _utf8_len(email) < 0
        or email.count("@") != 1
        or email.startswith("@")
        or email.endswith("@")
        or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in email)
    ):
        raise InvalidEmail()
    return Credentials(email=email.lower(), password=password)


# The wait limit's floor (seconds): with cheap hash settings two verifies are a millisecond or two,
# less than an event loop's ordinary hiccup, and a login must not be shed for that.
MIN_HASH_WAIT_LIMIT = 0.025


class LoginService:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        cache: AuthCache,
        hasher: PasswordHasher,
        throttle: Throttle,
        sessions: Sessions,
        metrics: Metrics,
    ) -> None:
        self._settings = settings
        self._db = db
        self._cache = cache
        self._hasher = hasher
        self._throttle = throttle
        self._sessions = sessions
        self._metrics = metrics
        self._in_flight = 0  # logins between entry and answer (one event loop touches it)
        self._before_hash = 0  # admitted logins of this process whose verify is not submitted yet
        # With several workers: the server's hash queue and every worker's _before_hash (hashpool.py).
        self._gauge = DepthGauge(settings.hash_socket) if settings.hash_socket else None

    def admit(self) -> Admission:
        """Admit one login or shed it with 503 OVERLOADED, before its body is read.

        The bound is the wait for a hashing thread: the hash jobs queued or running on the
        server's threads plus the admitted logins that have not submitted their verify yet, all
        workers' (read from the hash service's shared page, `hashpool.DepthGauge`; with one
        worker, its own pool and count). A login that would wait more than
        `max_hash_wait_verifies` verifies is refused, so an admitted one ends within that wait +
        its own verify + its own work under any flood, and a refused one costs no body read, no
        throttle, no lookup, no hash. The answer is the same for every account (nothing is known
        of it yet); Retry-After is the queue's expected wait. `max_pending_logins` still caps
        this process's logins in progress (throttled logins' detached lookups included)."""
        threads = self._settings.hash_threads
        depth = self._hash_depth()
        bound = self._settings.max_hash_wait_verifies
        # A new job starts once (depth - threads + 1) of those ahead are done: T threads end one
        # every verify / T on average.
        wait_verifies = max(0, depth + 1 - threads) / threads
        if self._in_flight >= self._settings.max_pending_logins or (bound and wait_verifies > bound):
            verify = self._hasher.typical_run(self._hasher.current_kind) or 1.0
            raise Overloaded(retry_after=wait_verifies * verify)
        self._in_flight += 1
        self._count_before_hash(+1)
        return Admission(self)

    def hash_wait_limit(self) -> float | None:
        """Seconds a login's verify may wait for a hashing thread: `max_hash_wait_verifies` x
        `PasswordHasher.wait_unit` (None: no bound). Admission only predicts the wait from the
        queue's length; a verify that has not started by then answers 503 OVERLOADED without
        hashing, so a queue that runs slower than predicted (hashes slowed by load, a stall)
        cannot stretch an admitted login beyond that wait + its own verify + its own work."""
        bound = self._settings.max_hash_wait_verifies
        unit = self._hasher.wait_unit()
        return max(bound * unit, MIN_HASH_WAIT_LIMIT) if bound and unit else None

    def _hash_depth(self) -> int:
        """Hash jobs queued or running plus admitted logins not hashing yet: the server's, all
        workers' (the hash service's shared page), or with one worker its own pool and count."""
        if self._gauge is not None:
            return self._gauge.waiting(self._before_hash)
        return self._hasher.queue_depth() + self._before_hash

    def _count_before_hash(self, delta: int) -> None:
        self._before_hash += delta
        if self._gauge is not None:
            self._gauge.publish(self._before_hash)

    def _release(self, admission: Admission) -> None:
        self._in_flight -= 1
        self._hashing(admission)

    def _hashing(self, admission: Admission | None) -> None:
        """The login's first verify is being submitted: from now the queue's depth counts it."""
        if admission is not None and admission.before_hash:
            admission.before_hash = False
            self._count_before_hash(-1)

    async def login(
        self, creds: Credentials, client_ip: str, user_agent: str | None, admission: Admission | None = None
    ) -> LoginResult:
        """Log in; `admission` is the one `admit` gave before the body was read (None: admit now)."""
        if admission is not None:
            return await self._login(creds, client_ip, user_agent, admission)
        with self.admit() as admitted:
            return await self._login(creds, client_ip, user_agent, admitted)

    async def _timed_lookup(self, email: str, spans: _Spans) -> UserRecord | None:
        t = time.perf_counter()
        try:
            return await self._db.auth_record(email)
        finally:
            spans.lookup += time.perf_counter() - t

    def _detach(self, task: asyncio.Future[Any]) -> None:
        """Let an overlapped lookup finish on its own after a throttled answer.

        Not awaited, so a 429 takes the same time whether or not the account was in L1; still
        counted as a pending login until it ends, so a flood of throttled requests can hold at
        most `max_pending_logins` lookups at once (beyond that: Overloaded, for every account)."""
        self._in_flight += 1

        def done(t: asyncio.Future[Any]) -> None:
            self._in_flight -= 1
            if not t.cancelled():
                t.exception()  # retrieved: a lookup error here is nobody's answer

        task.add_done_callback(done)

    async def _login(
        self, creds: Credentials, client_ip: str, user_agent: str | None, admission: Admission
    ) -> LoginResult:
        spans = _Spans(start=time.perf_counter())
        generation = self._cache.generation
        record = self._cache.user_by_email_l1(creds.email)
        from_cache = record is not None
        # L1 miss: the PostgreSQL lookup runs while Redis answers the throttle reservation, one
        # round trip instead of two in a row (at low load each costs ~0.5 ms of wake-up latency).
        lookup = None if from_cache else asyncio.ensure_future(self._timed_lookup(creds.email, spans))
        # Keys with no failure seen here: the hash runs while the reservation is in flight (from
        # L1 at once, else after the lookup); its verdict is read once the reservation counted it.
        keys = Keys.of(creds.email, client_ip)
        early = None
        opening = _Opening(client_ip, user_agent)
        if self._throttle.clean(keys):
            early = asyncio.ensure_future(
                self._verify_early(record, lookup, creds.password, admission, spans, opening)
            )
        try:
            return await self._decide(
                creds, admission, (record, lookup, early, generation), keys, opening, spans
            )
        finally:
            self._close(opening)

    async def _decide(
        self,
        creds: Credentials,
        admission: Admission,
        source: _Source,
        keys: Keys,
        opening: _Opening,
        spans: _Spans,
    ) -> LoginResult:
        """Reserve the attempt, take the verdict, open or hand out the session, settle the throttle."""
        start = spans.start
        record, lookup, early, _ = source
        try:
            ticket = await self._throttle.reserve(keys)
        except BaseException:
            for task in (lookup, early):
                if task is not None:
                    self._detach(task)
            raise
        finally:
            spans.throttle += time.perf_counter() - start
        attempt = _Attempt(ticket, admission)
        try:
            result = await self._verify_and_open(creds, attempt, source, opening, spans)
        except InvalidCredentials:
            raise  # counted by the reservation (and `failed`)
        except Exception:
            # No verdict (database down, pool exhausted, a bug): not a failure, unless a wrong
            # password was already seen in this attempt, which stays counted.
            if early is not None:
                self._detach(early)  # the lookup's error is its error too: retrieved, not logged
            if not attempt.wrong_password_seen:
                await self._throttle.released(ticket)
            raise
        t = time.perf_counter()
        await self._throttle.succeeded(ticket)
        spans.throttle += time.perf_counter() - t
        user, token, expires_at = result
        total = time.perf_counter() - start
        return LoginResult(
            user=user,
            token=token,
            expires_at=expires_at,
            security_risk=self._throttle.risk(ticket),
            total_ms=total * 1000,
            database_ms=(spans.db + spans.lookup) * 1000,
            verify_ms=spans.verify * 1000,
            cache_hits=1 if record is not None else 0,
            throttle_ms=spans.throttle * 1000,
            lookup_ms=spans.lookup * 1000,
            hash_ms=spans.hash * 1000,
        )

    async def _verify_early(
        self,
        record: UserRecord | None,
        lookup: asyncio.Future[UserRecord | None] | None,
        password: str,
        admission: Admission,
        spans: _Spans,
        opening: _Opening,
    ) -> bool:
        """The verify of a clean attempt, started before its reservation answers; beside it the
        session, when the hash starts at once (`_may_open`)."""
        if lookup is not None:
            record = await lookup
        if self._may_open(record, opening):
            assert record is not None
            opening.record = record
            opening.task = asyncio.ensure_future(
                self._sessions.create(record, opening.client_ip, opening.user_agent)
            )
        self._hashing(admission)
        return await self._verify(record, password, spans, bounded=True)

    def _may_open(self, record: UserRecord | None, opening: _Opening) -> bool:
        """Open the session before the verdict only for a usable record that needs no rehash,
        while the login is still going (not answered yet), a hashing thread is free for it (no
        queue: at load the early session saves nothing and a flood of guesses must not write),
        a pooled connection is idle and this role may discard what it opened."""
        if opening.closed or record is None or not _usable(record):
            return False
        assert record.hashed_password is not None
        if self._hasher.needs_rehash(record.hashed_password):
            return False
        if self._hash_depth() > self._settings.hash_threads:  # this login is counted in _before_hash
            return False
        return self._db.idle_connections() > 0 and self._sessions.opens_early()

    def _close(self, opening: _Opening) -> None:
        """The login has answered: a session it opened and did not hand out is discarded."""
        opening.closed = True
        if opening.task is not None and not opening.handed:
            self._detach(asyncio.ensure_future(self._discard(opening.task)))

    async def _discard(self, task: asyncio.Future[tuple[str, float, UserRecord] | None]) -> None:
        try:
            created = await task
        except Exception:
            return  # the insert failed: nothing to discard
        if created is None:
            return  # the record was stale: nothing was inserted
        try:
            await self._sessions.discard(created[0])
        except Exception as exc:
            log.warning(
                "an unused session could not be discarded (its token was never handed out)",
                extra={"fields": {"error": type(exc).__name__}},
            )

    async def _verify_and_open(
        self,
        creds: Credentials,
        attempt: _Attempt,
        source: _Source,
        opening: _Opening,
        spans: _Spans,
    ) -> tuple[UserRecord, str, float]:
        """Verify the password against the L1 record or the overlapped lookup's (`source`: record,
        lookup, the early verify of a clean attempt, the cache generation taken before any of
        them), then open the session.
        Returns (user, token, expires_at) or raises InvalidCredentials."""
        record, lookup, early, generation = source
        from_cache = record is not None
        for round_ in range(2):
            if round_ == 1:
                generation = self._cache.generation
                record, from_cache, early = await self._timed_lookup(creds.email, spans), False, None
            elif lookup is not None:
                record = await lookup
            if not from_cache and record is not None and not record.disabled and record.hashed_password:
                self._cache.fill_login_record(record, generation)
            self._hashing(attempt.admission)
            ok = (
                await early
                if early is not None
                else await self._verify(record, creds.password, spans, bounded=True)
            )
            if not ok and from_cache:
                attempt.wrong_password_seen = True
                # A failure against a cached hash is confirmed in PostgreSQL: if the hash changed
                # (a NOTIFY still in flight), verify against the current one. An uncached or
                # unknown email's failure costs the longer of (lookup, reservation) + verify +
                # the failure's Redis write, or, verified early, lookup + verify + write (the
                # reservation ran beside them). After a verify that followed the reservation, the
                # confirmation runs while the failure is recorded: reservation + verify + the
                # longer of (lookup, write). After an early verify, the failure is written after
                # the confirmation: verify + lookup + write. Either way the same parts as an
                # uncached email's on the same path.
                # (If the current hash then matches, the success refunds that failure.)
                if early is not None:
                    current = await self._timed_lookup(creds.email, spans)
                    await self._timed_failure(attempt, spans)
                else:
                    current, _ = await asyncio.gather(
                        self._timed_lookup(creds.email, spans), self._timed_failure(attempt, spans)
                    )
                assert record is not None
                if current is None or (current.hashed_password, current.disabled) != (
                    record.hashed_password,
                    record.disabled,
                ):
                    await self._cache.invalidate_user(record.id, creds.email)
                    record = current
                    if _usable(record):
                        ok = await self._verify(record, creds.password, spans)
                if not ok:
                    raise InvalidCredentials()
            elif not ok:
                attempt.wrong_password_seen = True
                await self._timed_failure(attempt, spans)
                raise InvalidCredentials()
            assert record is not None and record.hashed_password is not None
            if self._hasher.needs_rehash(record.hashed_password):
                new_hash = await self._hasher.hash_async(creds.password)
                t = time.perf_counter()
                if await self._db.rehash(record.id, record.hashed_password, new_hash):
                    record = replace(record, hashed_password=new_hash)
                spans.db += time.perf_counter() - t
            t = time.perf_counter()
            if opening.task is not None and opening.record is record:
                opening.handed = True  # this login's now, whatever it holds
                created = await opening.task
            else:
                created = await self._sessions.create(record, opening.client_ip, opening.user_agent)
            spans.db += time.perf_counter() - t
            if created is not None:
                token, expires_at, user = created
                return user, token, expires_at
            # The record we verified against is stale: drop it and decide again from PostgreSQL.
            await self._cache.invalidate_user(record.id, creds.email)
        await self._timed_failure(attempt, spans)
        raise InvalidCredentials()

    async def _verify(
        self, record: UserRecord | None, password: str, spans: _Spans, *, bounded: bool = False
    ) -> bool:
        """`bounded`: the login's own verify, whose wait for a hashing thread `hash_wait_limit`
        bounds (a confirmation after a cached hash failed is not bounded: it has waited once)."""
        stored = record.hashed_password if record is not None and _usable(record) else None
        t = time.perf_counter()
        try:
            checked = await self._hasher.check_async(
                stored, password, start_within=self.hash_wait_limit() if bounded else None
            )
        finally:
            spans.verify += time.perf_counter() - t
        spans.hash += checked.run
        return checked.ok

    async def _timed_failure(self, attempt: _Attempt, spans: _Spans) -> None:
        if attempt.failure_recorded:
            return
        attempt.failure_recorded = True
        t = time.perf_counter()
        try:
            await self._throttle.failed(attempt.ticket)
        finally:
            spans.throttle += time.perf_counter() - t


class Admission:
    """One admitted login (`LoginService.admit`); leaving the `with` block releases its place."""

    __slots__ = ("_open", "_service", "before_hash")

    def __init__(self, service: LoginService) -> None:
        self._service = service
        self.before_hash = True  # counted in the service's _before_hash until its verify is submitted
        self._open = True

    def __enter__(self) -> Admission:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._open:
            self._open = False
            self._service._release(self)


@dataclass(slots=True)
class _Opening:
    """The session a clean login opens while its hash runs (`LoginService._verify_early`): handed
    out by a success against `record`, discarded by any other end of the login."""

    client_ip: str
    user_agent: str | None
    record: UserRecord | None = None
    task: asyncio.Future[tuple[str, float, UserRecord] | None] | None = None
    handed: bool = False
    closed: bool = False  # the login has answered: open nothing now


@dataclass(slots=True)
class _Attempt:
    """One login's throttle reservation and what happened to it so far."""

    ticket: Reservation
    admission: Admission | None = None
    wrong_password_seen: bool = False
    failure_recorded: bool = False


def _usable(record: UserRecord | None) -> bool:
    return record is not None and not record.disabled and bool(record.hashed_password)
