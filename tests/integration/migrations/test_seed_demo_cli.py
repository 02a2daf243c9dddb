"""`phoenix-auth seed-demo N`: fast, idempotent demo users whose password really works."""

from __future__ import annotations

import time

import psycopg
import pytest

from phoenix_auth.cli import main
from phoenix_auth.passwords import PasswordHasher
from phoenix_auth.seed_demo import DEMO_PASSWORD
from phoenix_auth.settings import Settings

pytestmark = pytest.mark.integration


def _counts(url: str) -> tuple[int, int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE email LIKE '%%@demo.phoenix.dev'), "
            "count(*) FILTER (WHERE hashed_password LIKE '$2b$%%'), count(*) FROM users"
        ).fetchone()
        assert row is not None
        return row


def test_seed_demo_inserts_quickly_and_is_idempotent(
    migrated: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    started = time.monotonic()
    assert main(["seed-demo", "2000", "--bcrypt-fraction", "0.1"]) == 0
    took = time.monotonic() - started
    out = capsys.readouterr().out

    assert took < 20
    assert _counts(migrated) == (2000, 200, 2001)  # + test@example.com
    assert "seed-demo complete: 2000 inserted, 0 already present, 200 with bcrypt hashes" in out
    assert f"password: {DEMO_PASSWORD}" in out
    assert "inserted 2000/2000 (100%)" in out

    assert main(["seed-demo", "2000"]) == 0
    assert "0 inserted, 2000 already present" in capsys.readouterr().out
    assert _counts(migrated) == (2000, 200, 2001)

    assert main(["seed-demo", "2500"]) == 0  # only the missing ones
    assert "500 inserted, 2000 already present" in capsys.readouterr().out
    assert _counts(migrated)[0] == 2500


def test_seeded_passwords_verify(migrated: str) -> None:
    assert main(["seed-demo", "20", "--bcrypt-fraction", "0.5"]) == 0
    with psycopg.connect(migrated) as conn:
        rows = dict(conn.execute("SELECT lower(email), hashed_password FROM users").fetchall())
    hasher = PasswordHasher(Settings())
    try:
        assert hasher.verify(rows["test@example.com"], "testpassword")
        assert hasher.verify(rows["user1@demo.phoenix.dev"], DEMO_PASSWORD)
        assert hasher.verify(rows["user2@demo.phoenix.dev"], DEMO_PASSWORD)
        assert (
            rows["user1@demo.phoenix.dev"][:4] != rows["user2@demo.phoenix.dev"][:4]
        )  # one bcrypt, one argon2
        assert not hasher.verify(rows["user3@demo.phoenix.dev"], "wrong-password")
    finally:
        hasher.close()


def test_seed_demo_keeps_an_existing_test_user(migrated: str) -> None:
    with psycopg.connect(migrated) as conn:
        conn.execute("INSERT INTO users (email, hashed_password) VALUES ('Test@Example.com', 'keep-me')")
    assert main(["seed-demo", "5"]) == 0
    with psycopg.connect(migrated) as conn:
        rows = conn.execute(
            "SELECT hashed_password FROM users WHERE lower(email) = 'test@example.com'"
        ).fetchall()
    assert rows == [("keep-me",)]
