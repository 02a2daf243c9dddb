"""`phoenix-auth seed-demo N`: N demo users, fast enough for benchmark set-up (1M in well under 2 min).

Speed comes from hashing ONE password once (argon2id costs ~tens of ms; a million of them would
take hours) and streaming rows with COPY in large batches. Idempotent: users that already exist
(by lower(email)) are skipped, so a re-run only fills in what is missing. A fraction of the users
can get a bcrypt hash instead, to exercise the bcrypt → argon2id rehash path under load.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import bcrypt
import psycopg
from psycopg import sql

from .passwords import PasswordHasher

DEMO_PASSWORD = "phoenix-demo-password"  # noqa: S105 - printed at the end on purpose: these are demo accounts
DEMO_DOMAIN = "demo.phoenix.dev"
SEED_TEST_EMAIL = "test@example.com"  # the seed's curl example
SEED_TEST_PASSWORD = "testpassword"  # noqa: S105 - the seed's documented demo login
BCRYPT_ROUNDS = 10  # what NextAuth/Prisma apps typically used
BATCH_ROWS = 100_000
_DEMO_RE = re.compile(rf"^user(\d+)@{re.escape(DEMO_DOMAIN)}$")

Log = Callable[[str], None]


class SeedError(Exception):
    """seed-demo could not complete."""


@dataclass
class SeedReport:
    requested: int
    inserted: int
    skipped: int
    bcrypt_rows: int
    test_user_created: bool
    seconds: float


def demo_email(i: int) -> str:
    return f"user{i}@{DEMO_DOMAIN}"


def _is_bcrypt_row(i: int, fraction: float) -> bool:
    # Deterministic and evenly spread: row i is bcrypt when floor(i*f) steps up.
    return fraction > 0 and int((i + 1) * fraction) > int(i * fraction)


def _existing_demo_indices(conn: psycopg.Connection) -> set[int]:
    rows = conn.execute(
        "SELECT lower(email) FROM users WHERE lower(email) LIKE %s", (f"user%@{DEMO_DOMAIN}",)
    ).fetchall()
    found: set[int] = set()
    for (email,) in rows:
        match = _DEMO_RE.match(email)
        if match:
            found.add(int(match.group(1)))
    return found


def seed_demo(
    conn: psycopg.Connection,
    hasher: PasswordHasher,
    count: int,
    *,
    bcrypt_fraction: float = 0.0,
    batch_rows: int = BATCH_ROWS,
    log: Log = print,
    vacuum: bool = True,
) -> SeedReport:
    """Insert demo users 1..count (skipping existing ones) plus the seed's test user."""
    if count < 0:
        raise SeedError("N must be >= 0")
    if not 0.0 <= bcrypt_fraction <= 1.0:
        raise SeedError("--bcrypt-fraction must be between 0 and 1")
    if conn.autocommit:
        raise ValueError("seed_demo needs a non-autocommit connection (it commits per batch)")
    t0 = time.monotonic()

    argon_hash = hasher.hash(DEMO_PASSWORD)
    bcrypt_hash = (
        bcrypt.hashpw(DEMO_PASSWORD.encode(), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()
        if bcrypt_fraction > 0
        else ""
    )
    for value in (argon_hash, bcrypt_hash):
        if any(ch in value for ch in "\t\n\\"):  # COPY text format would need escaping
            raise SeedError("unexpected character in a generated hash")

    test_created = False
    with conn.transaction():
        if conn.execute("SELECT 1 FROM users WHERE lower(email) = %s", (SEED_TEST_EMAIL,)).fetchone() is None:
            conn.execute(
                "INSERT INTO users (id, email, name, role, hashed_password, team_name) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    str(uuid.uuid4()),
                    SEED_TEST_EMAIL,
                    "Test User",
                    "user",
                    hasher.hash(SEED_TEST_PASSWORD),
                    "Demo Team",
                ),
            )
            test_created = True
    log(f"seed user {SEED_TEST_EMAIL}: {'created' if test_created else 'already present'}")

    # An adopted Prisma table's id column has no default: then ids are made here ("demo-<n>");
    # otherwise the server's gen_random_uuid() default makes them (cheaper than uuid4() in Python).
    id_default = conn.execute(
        "SELECT column_default FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = 'users' AND column_name = 'id'"
    ).fetchone()
    own_ids = id_default is None or id_default[0] is None
    columns = (
        "id, email, name, role, hashed_password, team_name"
        if own_ids
        else "email, name, role, hashed_password, team_name"
    )

    existing = _existing_demo_indices(conn)
    conn.commit()
    skipped = sum(1 for i in existing if 1 <= i <= count)
    todo = count - skipped
    log(f"demo users: {count} requested, {skipped} already present, {todo} to insert")

    inserted = 0
    bcrypt_rows = 0
    i = 1
    while i <= count:
        batch_end = min(count, i + batch_rows - 1)
        lines: list[str] = []
        for n in range(i, batch_end + 1):
            if n in existing:
                continue
            is_bcrypt = _is_bcrypt_row(n, bcrypt_fraction)
            bcrypt_rows += is_bcrypt
            role = "admin" if n % 1000 == 0 else "user"
            lines.append(
                (f"demo-{n}\t" if own_ids else "") + f"user{n}@{DEMO_DOMAIN}\tDemo User {n}\t{role}\t"
                f"{bcrypt_hash if is_bcrypt else argon_hash}\tteam-{n % 100}\n"
            )
        if lines:
            try:
                with (
                    conn.transaction(),
                    conn.cursor() as cur,
                    cur.copy(sql.SQL("COPY users ({}) FROM STDIN").format(sql.SQL(columns))) as copy,
                ):
                    chunk = 20_000
                    for k in range(0, len(lines), chunk):
                        copy.write("".join(lines[k : k + chunk]))
            except psycopg.errors.UniqueViolation as exc:
                raise SeedError(
                    f"a demo user was inserted concurrently by someone else; run seed-demo again: {exc}"
                ) from exc
            inserted += len(lines)
            elapsed = time.monotonic() - t0
            log(
                f"  inserted {inserted}/{todo} ({100.0 * inserted / max(todo, 1):.0f}%), "
                f"{inserted / max(elapsed, 1e-9):,.0f} rows/s, {elapsed:.1f}s"
            )
        i = batch_end + 1
    conn.commit()

    if inserted or test_created:
        started = time.monotonic()
        saved = conn.autocommit
        conn.autocommit = True  # VACUUM cannot run inside a transaction
        try:
            if vacuum:
                conn.execute("VACUUM (ANALYZE) users")
                log(f"VACUUM (ANALYZE) users: {time.monotonic() - started:.1f}s")
            else:
                conn.execute("ANALYZE users")
                log(f"ANALYZE users: {time.monotonic() - started:.1f}s")
        finally:
            conn.autocommit = saved

    return SeedReport(
        requested=count,
        inserted=inserted,
        skipped=skipped,
        bcrypt_rows=bcrypt_rows,
        test_user_created=test_created,
        seconds=time.monotonic() - t0,
    )
