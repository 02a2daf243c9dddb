"""`phoenix-auth user ...` and `phoenix-auth sessions revoke` against a real, migrated database."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest

from phoenix_auth.cli import EXIT_EXISTS, EXIT_NOT_FOUND, EXIT_USAGE, main
from phoenix_auth.passwords import PasswordHasher
from phoenix_auth.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def hasher(migrated: str) -> Iterator[PasswordHasher]:
    h = PasswordHasher(Settings())
    yield h
    h.close()


def _run(monkeypatch: pytest.MonkeyPatch, argv: list[str], stdin: str = "") -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return main(argv)


def _user(url: str, email: str) -> dict | None:
    with psycopg.connect(url) as conn:
        cur = conn.execute(
            "SELECT id, email, name, role, team_name, disabled, hashed_password, password_changed_at "
            "FROM users WHERE lower(email) = %s",
            (email,),
        )
        row = cur.fetchone()
        return None if row is None else dict(zip([d.name for d in cur.description], row, strict=True))


def _create(
    monkeypatch: pytest.MonkeyPatch,
    email: str = "Alice@Example.com ",
    password: str = "first-pass-1",  # noqa: S107
) -> int:
    return _run(
        monkeypatch,
        [
            "user",
            "create",
            "--email",
            email,
            "--name",
            "Alice",
            "--role",
            "admin",
            "--team",
            "red",
            "--password-stdin",
        ],
        password + "\n",
    )


def test_create_user_normalises_email_and_hashes_with_argon2id(
    migrated: str, hasher: PasswordHasher, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _create(monkeypatch) == 0
    out = capsys.readouterr().out
    user = _user(migrated, "alice@example.com")
    assert user is not None
    assert user["email"] == "alice@example.com"
    assert (user["name"], user["role"], user["team_name"], user["disabled"]) == (
        "Alice",
        "admin",
        "red",
        False,
    )
    assert user["hashed_password"].startswith("$argon2id$")
    assert hasher.verify(user["hashed_password"], "first-pass-1")
    assert "first-pass-1" not in out
    assert f"created user alice@example.com (id {user['id']}" in out

    assert _create(monkeypatch, email="ALICE@example.com") == EXIT_EXISTS
    assert "already exists" in capsys.readouterr().err


def test_create_rejects_bad_input_without_touching_the_table(
    migrated: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _create(monkeypatch, email="not-an-email") == EXIT_USAGE
    assert "not a valid email address" in capsys.readouterr().err
    assert _create(monkeypatch, password="short") == EXIT_USAGE
    assert "at least 8 characters" in capsys.readouterr().err
    assert _run(monkeypatch, ["user", "create", "--email", "x@example.com"], "") == EXIT_USAGE
    assert "no password given" in capsys.readouterr().err
    with psycopg.connect(migrated) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)


def test_set_password_notifies_every_replica(
    migrated: str, hasher: PasswordHasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _create(monkeypatch) == 0
    before = _user(migrated, "alice@example.com")
    assert before is not None

    with psycopg.connect(migrated, autocommit=True) as listener:
        listener.execute("LISTEN phoenix_invalidate")
        assert (
            _run(
                monkeypatch,
                ["user", "set-password", "--email", "ALICE@example.com", "--password-stdin"],
                "second-pass-2\n",
            )
            == 0
        )
        notes = list(listener.notifies(timeout=2.0, stop_after=1))

    assert len(notes) == 1
    assert json.loads(notes[0].payload) == {"kind": "user", "id": before["id"], "email": "alice@example.com"}
    after = _user(migrated, "alice@example.com")
    assert after is not None
    assert hasher.verify(after["hashed_password"], "second-pass-2")
    assert not hasher.verify(after["hashed_password"], "first-pass-1")
    assert after["password_changed_at"] > before["password_changed_at"]


def test_set_password_from_environment_variable(
    migrated: str, hasher: PasswordHasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _create(monkeypatch) == 0
    monkeypatch.setenv("PHOENIX_NEW_PASSWORD", "from-env-pass")
    assert _run(monkeypatch, ["user", "set-password", "--email", "alice@example.com"]) == 0
    user = _user(migrated, "alice@example.com")
    assert user is not None and hasher.verify(user["hashed_password"], "from-env-pass")


def test_disable_enable_delete(
    migrated: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _create(monkeypatch) == 0
    assert main(["user", "disable", "--email", "alice@example.com"]) == 0
    assert _user(migrated, "alice@example.com")["disabled"] is True
    assert main(["user", "enable", "--email", "alice@example.com"]) == 0
    assert _user(migrated, "alice@example.com")["disabled"] is False

    capsys.readouterr()
    assert main(["user", "delete", "--email", "alice@example.com"]) == EXIT_USAGE
    assert "--yes" in capsys.readouterr().err
    assert _user(migrated, "alice@example.com") is not None
    assert main(["user", "delete", "--email", "alice@example.com", "--yes"]) == 0
    assert _user(migrated, "alice@example.com") is None

    assert main(["user", "disable", "--email", "alice@example.com"]) == EXIT_NOT_FOUND
    assert "no user alice@example.com" in capsys.readouterr().err


def test_revoke_sessions_by_email_and_id(
    migrated: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _create(monkeypatch) == 0
    user = _user(migrated, "alice@example.com")
    assert user is not None
    live = [hashlib.sha256(t).digest() for t in (b"token-a", b"token-b")]
    with psycopg.connect(migrated) as conn:
        for token_hash in live:
            conn.execute(
                "INSERT INTO phoenix_sessions (token_hash, user_id, expires_at) "
                "VALUES (%s, %s, now() + interval '1 hour')",
                (token_hash, user["id"]),
            )
        conn.execute(
            "INSERT INTO phoenix_sessions (token_hash, user_id, expires_at, revoked_at) "
            "VALUES (%s, %s, now() + interval '1 hour', now() - interval '1 minute')",
            (hashlib.sha256(b"token-old").digest(), user["id"]),
        )
    capsys.readouterr()

    with psycopg.connect(migrated, autocommit=True) as listener:
        listener.execute("LISTEN phoenix_invalidate")
        assert main(["sessions", "revoke", "--email", "Alice@example.com"]) == 0
        notes = list(listener.notifies(timeout=2.0, stop_after=2))
    assert "revoked 2 active session(s) of alice@example.com" in capsys.readouterr().out
    assert sorted(json.loads(n.payload)["hash"] for n in notes) == sorted(h.hex() for h in live)
    with psycopg.connect(migrated) as conn:
        assert conn.execute("SELECT count(*) FROM phoenix_sessions WHERE revoked_at IS NULL").fetchone() == (
            0,
        )

    assert main(["sessions", "revoke", "--user-id", user["id"]]) == 0
    assert "revoked 0 active session(s)" in capsys.readouterr().out
    assert main(["sessions", "revoke", "--user-id", "no-such-id"]) == EXIT_NOT_FOUND


def test_console_script_creates_a_user(migrated: str) -> None:
    result = subprocess.run(
        ["phoenix-auth", "user", "create", "--email", "bob@example.com", "--password-stdin"],
        input="bob-password-1\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
    assert "created user bob@example.com" in result.stdout
    assert _user(migrated, "bob@example.com") is not None


def test_commands_on_an_unmigrated_database_say_to_migrate_first(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["user", "disable", "--email", "a@example.com"]) == 1
    assert "run `phoenix-auth migrate` first" in capsys.readouterr().err
    assert main(["seed-demo", "3"]) == 1
    assert "run `phoenix-auth migrate` first" in capsys.readouterr().err


def test_set_password_revokes_live_sessions_unless_kept(
    migrated: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _create(monkeypatch) == 0
    user = _user(migrated, "alice@example.com")
    assert user is not None

    def live_sessions() -> int:
        with psycopg.connect(migrated) as conn:
            return conn.execute(
                "SELECT count(*) FROM phoenix_sessions WHERE user_id = %s AND revoked_at IS NULL",
                (user["id"],),
            ).fetchone()[0]

    def open_session(token: bytes) -> None:
        with psycopg.connect(migrated) as conn:
            conn.execute(
                "INSERT INTO phoenix_sessions (token_hash, user_id, expires_at) "
                "VALUES (%s, %s, now() + interval '1 hour')",
                (hashlib.sha256(token).digest(), user["id"]),
            )

    open_session(b"kept")
    capsys.readouterr()
    argv = ["user", "set-password", "--email", "alice@example.com", "--password-stdin"]
    assert _run(monkeypatch, [*argv, "--keep-sessions"], "third-pass-3\n") == 0
    assert "; kept;" in capsys.readouterr().out
    assert live_sessions() == 1

    open_session(b"second")
    assert _run(monkeypatch, argv, "fourth-pass-4\n") == 0
    assert "2 active session(s) revoked" in capsys.readouterr().out
    assert live_sessions() == 0
