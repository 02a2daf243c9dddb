"""Migrating an existing NextAuth/Prisma-style users table: bcrypt hashes keep working, nothing is lost."""

from __future__ import annotations

import io
import sys

import bcrypt
import psycopg
import pytest

from phoenix_auth.cli import main
from phoenix_auth.migrations import AUTH_COVERING, index_state
from phoenix_auth.passwords import PasswordHasher
from phoenix_auth.settings import Settings

pytestmark = pytest.mark.integration

USERS = [
    ("clx01", "Ada@Example.com", "Ada Lovelace", "admin", "correct horse"),
    ("clx02", "grace@example.com", "Grace Hopper", "user", "battery staple"),
    ("clx03", "linus@example.com", None, "user", "hunter22hunter"),
]


def test_existing_prisma_table_with_bcrypt_hashes_is_migrated_in_place(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(cli_env) as conn:
        conn.execute(
            """
            CREATE TABLE users (
                id text PRIMARY KEY,
                email text NOT NULL UNIQUE,
                name text,
                role text,
                hashed_password text
            )
            """
        )
        for uid, email, name, role, password in USERS:
            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
            conn.execute(
                "INSERT INTO users (id, email, name, role, hashed_password) VALUES (%s, %s, %s, %s, %s)",
                (uid, email, name, role, hashed),
            )
        before = conn.execute(
            "SELECT id, email, name, role, hashed_password FROM users ORDER BY id"
        ).fetchall()

    assert main(["migrate"]) == 0
    out = capsys.readouterr().out
    assert "OK: login lookup" in out

    with psycopg.connect(cli_env) as conn:
        after = conn.execute(
            "SELECT id, email, name, role, hashed_password FROM users ORDER BY id"
        ).fetchall()
        extra = conn.execute(
            "SELECT disabled, team_name, password_changed_at IS NOT NULL FROM users ORDER BY id"
        ).fetchall()
        state = index_state(conn, AUTH_COVERING.name)
        # The login lookup finds a mixed-case email case-insensitively.
        found = conn.execute(
            "SELECT id, hashed_password FROM users WHERE lower(email) = lower(%s)", ("ada@example.COM",)
        ).fetchone()
    assert after == before
    assert extra == [(False, None, True)] * len(USERS)
    assert state is not None and state.valid
    assert found is not None and found[0] == "clx01"

    hasher = PasswordHasher(Settings())
    try:
        for (_, _, _, _, password), (_, _, _, _, stored) in zip(USERS, after, strict=True):
            assert stored.startswith("$2b$")
            assert hasher.verify(stored, password)
            assert not hasher.verify(stored, password + "x")
            assert hasher.needs_rehash(stored)  # the service upgrades it to argon2id on next login
    finally:
        hasher.close()


def test_admin_commands_work_on_an_adopted_table_whose_id_has_no_default(
    cli_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(cli_env) as conn:
        conn.execute(
            "CREATE TABLE users (id text PRIMARY KEY, email text NOT NULL UNIQUE, name text, role text)"
        )
    assert main(["migrate"]) == 0

    monkeypatch.setattr(sys, "stdin", io.StringIO("new-user-pass\n"))
    assert main(["user", "create", "--email", "new@example.com", "--password-stdin"]) == 0
    assert main(["seed-demo", "50"]) == 0

    with psycopg.connect(cli_env) as conn:
        ids = dict(conn.execute("SELECT email, id FROM users").fetchall())
    assert len(ids) == 52  # 50 demo users, test@example.com, new@example.com
    assert ids["user7@demo.phoenix.dev"] == "demo-7"
    assert len(ids["new@example.com"]) == 36  # a uuid made by the CLI
