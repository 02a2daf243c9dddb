"""Password hashes made cheaply, for users a test inserts the way another app would."""

from __future__ import annotations

import bcrypt
from argon2 import PasswordHasher as Argon2
from argon2 import Type

from .service import FAST_ARGON2

_fast_hasher = Argon2(
    time_cost=FAST_ARGON2["argon2_time_cost"],
    memory_cost=FAST_ARGON2["argon2_memory_kib"],
    parallelism=FAST_ARGON2["argon2_parallelism"],
    type=Type.ID,
)


def fast_hash(password: str) -> str:
    """An argon2id hash with the cheap parameters every test service runs with (FAST_ARGON2)."""
    return _fast_hasher.hash(password)


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash at the lowest cost, as a NextAuth/Prisma app would have stored (cheaply)."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
