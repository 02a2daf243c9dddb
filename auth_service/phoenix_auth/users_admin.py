"""Operator-side user and session administration (`phoenix-auth user ...`, `phoenix-auth sessions revoke`).

Every change is a plain SQL write to `users`/`phoenix_sessions`: the schema's triggers NOTIFY
`phoenix_invalidate`, so every running replica drops its cached copies within a second. Nothing
here talks to Redis or to the service directly, which keeps these commands correct even while
the service is down.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import psycopg

from .passwords import PasswordHasher

EMAIL_MAX = 254  # RFC 5321 path limit
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_ROLE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
PASSWORD_MIN_CHARS = 8  # NIST 800-63B minimum for user-chosen secrets
NAME_MAX = 200


class UserAdminError(Exception):
    """Base of every failure of a user or session command."""


class InvalidEmail(UserAdminError):
    pass


class InvalidRole(UserAdminError):
    pass


class InvalidName(UserAdminError):
    pass


class InvalidPassword(UserAdminError):
    """The password breaks the policy. The message never contains the password."""


class UserNotFound(UserAdminError):
    pass


class UserExists(UserAdminError):
    pass


def normalise_email(raw: str) -> str:
    """Strip and lower-case, then validate: the login lookup compares lower(email)."""
    email = raw.strip().lower()
    if not email or len(email) > EMAIL_MAX or not _EMAIL_RE.match(email):
        raise InvalidEmail(f"not a valid email address: {raw.strip()[:80]!r}")
    return email


def check_role(role: str) -> str:
    role = role.strip()
    if not _ROLE_RE.match(role):
        raise InvalidRole(
            f"role must be 1-64 characters of letters, digits, '_', '.', '-' starting with a letter: {role!r}"
        )
    return role


def check_name(name: str | None) -> str | None:
    if name is None:
        return None
    name = name.strip()
    if len(name) > NAME_MAX or any(ord(ch) < 32 for ch in name):
        raise InvalidName(f"name must be at most {NAME_MAX} printable characters")
    return name or None


def check_password(password: str, max_bytes: int) -> str:
    if len(password) < PASSWORD_MIN_CHARS:
        raise InvalidPassword(f"password must have at least {PASSWORD_MIN_CHARS} characters")
    if len(password.encode("utf-8")) > max_bytes:
        raise InvalidPassword(f"password must be at most {max_bytes} bytes (PHOENIX_MAX_PASSWORD_BYTES)")
    return password


@dataclass(frozen=True)
class UserRef:
    """A user named by email or by id (exactly one)."""

    email: str | None = None
    user_id: str | None = None

    def __post_init__(self) -> None:
        if (self.email is None) == (self.user_id is None):
            raise ValueError("UserRef needs exactly one of email or user_id")
        if self.email is not None:
            object.__setattr__(self, "email", normalise_email(self.email))

    def where(self) -> tuple[str, tuple[str]]:
        if self.email is not None:
            return "lower(email) = %s", (self.email,)
        assert self.user_id is not None
        return "id = %s", (self.user_id,)

    def __str__(self) -> str:
        return self.email if self.email is not None else f"id {self.user_id}"


@dataclass(frozen=True)
class UserRecord:
    id: str
    email: str
    name: str | None
    role: str
    team_name: str | None
    disabled: bool


def get_user(conn: psycopg.Connection, ref: UserRef) -> UserRecord:
    where, params = ref.where()
    row = conn.execute(
        f"SELECT id, email, name, role, team_name, disabled FROM users WHERE {where}",  # noqa: S608 - fixed fragments
        params,
    ).fetchone()
    if row is None:
        raise UserNotFound(f"no user {ref}")
    return UserRecord(*row)


def create_user(
    conn: psycopg.Connection,
    hasher: PasswordHasher,
    *,
    email: str,
    password: str,
    max_password_bytes: int,
    name: str | None = None,
    role: str = "user",
    team: str | None = None,
) -> UserRecord:
    """Insert a user with an argon2id hash; UserExists when the email is taken (any case)."""
    email = normalise_email(email)
    role = check_role(role)
    name = check_name(name)
    team = check_name(team)
    check_password(password, max_password_bytes)
    hashed = hasher.hash(password)
    with conn.transaction():
        if conn.execute("SELECT 1 FROM users WHERE lower(email) = %s", (email,)).fetchone():
            raise UserExists(f"a user with email {email} already exists")
        try:
            row = conn.execute(
                """
                INSERT INTO users (id, email, name, role, hashed_password, team_name)
                VALUES (%s, %s, %s, %s, %s, %s)
                RETURNING id, email, name, role, team_name, disabled
                """,
                # The id is made here: an adopted Prisma table's id column has no default.
                (str(uuid.uuid4()), email, name, role, hashed, team),
            ).fetchone()
        except psycopg.errors.UniqueViolation as exc:  # raced with another writer
            raise UserExists(f"a user with email {email} already exists") from exc
    assert row is not None
    return UserRecord(*row)


def set_password(
    conn: psycopg.Connection,
    hasher: PasswordHasher,
    ref: UserRef,
    password: str,
    max_password_bytes: int,
    *,
    revoke: bool = True,
) -> tuple[UserRecord, int]:
    """Replace the hash, stamp password_changed_at and (by default) revoke the user's live sessions.

    A password change is usually a response to a compromise, so sessions opened with the old
    password end with it, in the same transaction. Returns (user, sessions revoked).
    """
    check_password(password, max_password_bytes)
    hashed = hasher.hash(password)
    where, params = ref.where()
    revoked = 0
    with conn.transaction():
        row = conn.execute(
            f"UPDATE users SET hashed_password = %s, password_changed_at = now(), updated_at = now() "  # noqa: S608
            f"WHERE {where} RETURNING id, email, name, role, team_name, disabled",
            (hashed, *params),
        ).fetchone()
        if row is None:
            raise UserNotFound(f"no user {ref}")
        if revoke:
            revoked = conn.execute(
                "UPDATE phoenix_sessions SET revoked_at = now() WHERE user_id = %s AND revoked_at IS NULL",
                (row[0],),
            ).rowcount
    return UserRecord(*row), revoked


def set_disabled(conn: psycopg.Connection, ref: UserRef, disabled: bool) -> UserRecord:
    where, params = ref.where()
    with conn.transaction():
        row = conn.execute(
            f"UPDATE users SET disabled = %s, updated_at = now() WHERE {where} "  # noqa: S608
            "RETURNING id, email, name, role, team_name, disabled",
            (disabled, *params),
        ).fetchone()
    if row is None:
        raise UserNotFound(f"no user {ref}")
    return UserRecord(*row)


def delete_user(conn: psycopg.Connection, ref: UserRef) -> UserRecord:
    """Delete the user; their sessions go with them (ON DELETE CASCADE), each one NOTIFYing."""
    where, params = ref.where()
    with conn.transaction():
        row = conn.execute(
            f"DELETE FROM users WHERE {where} RETURNING id, email, name, role, team_name, disabled",  # noqa: S608
            params,
        ).fetchone()
    if row is None:
        raise UserNotFound(f"no user {ref}")
    return UserRecord(*row)


def revoke_sessions(conn: psycopg.Connection, ref: UserRef) -> tuple[UserRecord, int]:
    """Revoke every live session of the user; returns (user, sessions revoked)."""
    with conn.transaction():
        user = get_user(conn, ref)
        cur = conn.execute(
            "UPDATE phoenix_sessions SET revoked_at = now() WHERE user_id = %s AND revoked_at IS NULL",
            (user.id,),
        )
        return user, cur.rowcount
