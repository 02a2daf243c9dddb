"""The two records the service caches: a user's auth data and a session, with compact encodings.

L2 (Redis) stores them as short JSON arrays (positional, no key names) to keep entries small,
sealed by signing.py before they are written (`from_l2` is only ever given a verified payload).
The L2 user encoding deliberately leaves out `hashed_password`: see cache.py for why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class UserRecord:
    """The columns of the covering index on lower(email) (and of the session-data index on id)."""

    id: str
    email: str
    name: str | None
    role: str
    hashed_password: str | None
    team_name: str | None
    disabled: bool
    password_changed_at: float  # epoch seconds

    def public(self) -> dict[str, str | None]:
        """The `user` object of API responses (the seed's PhoenixUser shape)."""
        return {
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "role": self.role,
            "teamName": self.team_name,
        }

    def without_hash(self) -> UserRecord:
        return replace(self, hashed_password=None)

    def to_l2(self) -> bytes:
        """Compact encoding for Redis, never containing the password hash."""
        return json.dumps(
            [
                self.id,
                self.email,
                self.name,
                self.role,
                self.team_name,
                int(self.disabled),
                self.password_changed_at,
            ],
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_l2(cls, raw: bytes) -> UserRecord:
        uid, email, name, role, team, disabled, pca = json.loads(raw)
        return cls(
            id=uid,
            email=email,
            name=name,
            role=role,
            hashed_password=None,
            team_name=team,
            disabled=bool(disabled),
            password_changed_at=float(pca),
        )


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """What validating a token needs besides the user: owner, expiry, revocation, birth (a session
    older than the user's last password change is over)."""

    user_id: str
    expires_at: float  # epoch seconds
    revoked: bool
    created_at: float = 0.0  # epoch seconds

    def to_l2(self) -> bytes:
        return json.dumps(
            [self.user_id, self.expires_at, int(self.revoked), self.created_at], separators=(",", ":")
        ).encode()

    @classmethod
    def from_l2(cls, raw: bytes) -> SessionRecord:
        user_id, expires_at, revoked, created_at = json.loads(raw)
        return cls(
            user_id=user_id, expires_at=float(expires_at), revoked=bool(revoked), created_at=float(created_at)
        )
