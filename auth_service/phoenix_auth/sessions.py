"""Sessions: opaque random tokens, stored only as SHA-256, durable in PostgreSQL, cached in L1/L2.

- A token is 32 random bytes (256 bits) in URL-safe base64 (43 characters). Only its SHA-256 is
  stored anywhere (PostgreSQL primary key, cache keys); the token itself exists only in the
  client's cookie or Authorization header.
- PostgreSQL is the source of truth, so a Redis restart or FLUSHALL logs nobody out: the next
  check simply misses the caches and reads the row.
- Revocation is an UPDATE (`revoked_at`), whose trigger NOTIFYs every replica; each drops the
  session from L1 and L2 within milliseconds (and the revoking replica drops it before it answers).
- A session is valid only if it exists, is not revoked, has not expired, its user exists and
  is not disabled (a disable or delete is likewise invalidated by NOTIFY), and it is younger than
  the user's last password change (made by anyone: the schema's trigger moves
  password_changed_at on any change of the hash, except Phoenix's own bcrypt -> argon2id rehash).
- A login may open its session while the password hash runs (login.py); when the login then does
  not succeed, the row is discarded (`discard`): its token was never handed out, so until then it
  is a row nobody can use.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
import time
from dataclasses import dataclass

import psycopg

from .cache import AuthCache
from .db import Database
from .errors import InvalidSession
from .metrics import Metrics
from .records import SessionRecord, UserRecord
from .settings import Settings

log = logging.getLogger("phoenix_auth.sessions")

TOKEN_BYTES = 32
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


def well_formed(token: str) -> bool:
    """Cheap syntactic check so garbage never reaches the caches or the database."""
    return bool(_TOKEN_RE.match(token))


@dataclass(frozen=True, slots=True)
class ValidSession:
    user: UserRecord
    session: SessionRecord
    cache_hits: int


class Sessions:
    def __init__(self, settings: Settings, db: Database, cache: AuthCache, metrics: Metrics) -> None:
        self._settings = settings
        self._db = db
        self._cache = cache
        self._metrics = metrics
        # Whether this role may discard a session it opened: None until asked (`opens_early`).
        self._can_discard: bool | None = None
        self._asking: asyncio.Task[None] | None = None

    def opens_early(self) -> bool:
        """Whether a login may open its session before its verdict. Only once PostgreSQL said this
        role may discard one (`phoenix_discard_session`, migration 0002, granted to it): the first
        call asks in the background and answers False until then, so an unmigrated database or an
        older runtime role's grants cost no early session, never an undiscardable one."""
        if self._can_discard is None and self._asking is None:
            self._asking = asyncio.ensure_future(self.ask_can_discard())
        return bool(self._can_discard)

    async def ask_can_discard(self) -> None:
        """Ask PostgreSQL whether this role may discard a session (start-up does, then logins)."""
        try:
            self._can_discard = await self._db.can_discard_sessions()
            if not self._can_discard:
                log.warning(
                    "logins open their session after the verdict: this role may not run "
                    "phoenix_discard_session (run `phoenix-auth migrate`; grant EXECUTE, docs/operator.md)"
                )
        except Exception as exc:  # the database is down: ask again on a later login
            log.debug(
                "could not ask whether sessions may be discarded",
                extra={"fields": {"error": type(exc).__name__}},
            )
        finally:
            self._asking = None

    async def discard(self, token: str) -> None:
        """Delete a session whose login did not succeed; nobody was given its token.

        Should the function fail for want of a grant (revoked since we asked), the row is revoked
        instead (an UPDATE the role may make) and this process opens no more sessions early."""
        digest = token_hash(token)
        try:
            await self._db.discard_session(digest)
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedFunction):
            self._can_discard = False
            log.warning(
                "could not discard an unused session (revoked instead); opening sessions after the verdict"
            )
            await self._db.revoke_session(digest)

    async def create(
        self, user: UserRecord, client_ip: str | None, user_agent: str | None
    ) -> tuple[str, float, UserRecord] | None:
        """Create a session for `user` if PostgreSQL still has them enabled with the verified hash.

        Returns (token, expires_at epoch seconds, user with fresh profile fields), or None when
        the record we verified against is stale (changed or disabled meanwhile)."""
        assert user.hashed_password is not None
        token = new_token()
        expires_at = time.time() + self._settings.session_ttl
        fresh = await self._db.insert_session(
            token_hash(token), user.id, user.hashed_password, expires_at, client_ip, user_agent
        )
        if fresh is None:
            return None
        email, name, role, team = fresh
        current = UserRecord(
            id=user.id,
            email=email,
            name=name,
            role=role,
            hashed_password=user.hashed_password,
            team_name=team,
            disabled=False,
            password_changed_at=user.password_changed_at,
        )
        return token, expires_at, current

    async def validate(self, token: str) -> ValidSession:
        """The hot path: an L1 hit costs two dict lookups, no I/O and no await (the L1 halves of
        the cache lookups are synchronous; L2 and PostgreSQL are awaited only on a miss)."""
        if not well_formed(token):
            raise InvalidSession()
        digest = token_hash(token)
        hex_hash = digest.hex()
        cache = self._cache
        generation = cache.generation
        session = cache.session_l1(hex_hash)
        hits = 1
        if session is None:
            session, hits = await cache.session_l2(hex_hash)
        user: UserRecord | None
        if session is None:
            cache.degraded_lookup()
            found = await self._db.session(digest)
            if found is None:
                raise InvalidSession()
            session, user = found
            await cache.fill_session(hex_hash, session, generation)
            await cache.fill_user(user, generation)
        else:
            user = cache.user_by_id_l1(session.user_id)
            if user is not None:
                hits += 1
            else:
                user, user_hits = await cache.user_by_id_l2(session.user_id)
                hits += user_hits
            if user is None:
                user = await self._db.user_by_id(session.user_id)
                if user is None:
                    raise InvalidSession()
                await cache.fill_user(user, generation)
        if (
            session.revoked
            or session.expires_at <= time.time()
            or user.disabled
            or session.created_at < user.password_changed_at
        ):
            raise InvalidSession()
        return ValidSession(user=user, session=session, cache_hits=hits)

    async def revoke(self, token: str) -> bool:
        """Revoke one session; True if it was live. Every replica hears of it through NOTIFY."""
        if not well_formed(token):
            return False
        digest = token_hash(token)
        revoked = await self._db.revoke_session(digest)
        await self._cache.invalidate_sessions([digest.hex()])
        return revoked

    async def revoke_user(self, user_id: str) -> int | None:
        """Revoke every live session of a user; None when there is no such user.

        This replica drops the sessions from its caches before answering, as `revoke` does: the
        NOTIFY reaches its own listener only after the answer may have gone out, and a check sent
        right after the revoke must not be served the cached, still-valid session."""
        revoked = await self._db.revoke_user_sessions(user_id)
        if revoked is None:
            return None
        await self._cache.invalidate_sessions([digest.hex() for digest in revoked])
        return len(revoked)
