"""Password hashing: argon2id for new hashes, bcrypt accepted from existing NextAuth/Prisma tables.

The functions here are synchronous and CPU-bound on purpose: argon2-cffi and bcrypt release the
GIL, so callers run them in a thread pool sized to the cores (see `PasswordHasher.verify_async`)
and one process reaches the machine's hashing limit without blocking the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from concurrent.futures import ThreadPoolExecutor

import bcrypt
from argon2 import PasswordHasher as _Argon2
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .settings import Settings

BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
ARGON2_PREFIX = "$argon2"


class PasswordHasher:
    """Hash and verify passwords with the configured argon2id parameters."""

    def __init__(self, settings: Settings) -> None:
        self._argon2 = _Argon2(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            type=Type.ID,
        )
        # A hash of a random password with our parameters: verifying against it costs exactly
        # what a real verify costs, so an unknown email is indistinguishable by timing.
        self._dummy_hash = self._argon2.hash(secrets.token_urlsafe(16))
        self._executor = ThreadPoolExecutor(max_workers=settings.hash_threads, thread_name_prefix="hash")

    def hash(self, password: str) -> str:
        return self._argon2.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """True when `password` matches; never raises for a malformed or foreign hash."""
        if not stored_hash:
            self.dummy_verify(password)
            return False
        if stored_hash.startswith(BCRYPT_PREFIXES):
            try:
                return bcrypt.checkpw(password.encode("utf-8")[:72], stored_hash.encode("ascii"))
            except ValueError:
                return False
        if stored_hash.startswith(ARGON2_PREFIX):
            try:
                return self._argon2.verify(stored_hash, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False
        self.dummy_verify(password)
        return False

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

    async def verify_async(self, stored_hash: str | None, password: str) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.verify, stored_hash, password)

    async def hash_async(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.hash, password)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
