"""`phoenix-auth` argument handling, settings errors and exit codes, without a database."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import types

import pytest

from phoenix_auth import cli
from phoenix_auth.cli import EXIT_DB_UNREACHABLE, EXIT_USAGE, main
from phoenix_auth.settings import Settings
from phoenix_auth.users_admin import InvalidEmail, InvalidRole, UserRef, check_role, normalise_email


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("PHOENIX_") or key in ("DATABASE_URL", "REDIS_URL"):
            monkeypatch.delenv(key)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_invalid_setting_exits_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PHOENIX_ARGON2_MEMORY_KIB", "100")
    assert main(["migrate"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "PHOENIX_ARGON2_MEMORY_KIB: Input should be greater than or equal to 8192 (got '100')" in err
    assert "Traceback" not in err


def test_invalid_database_url_is_named_but_never_echoed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://app:s3cr3t-pw@db/app")
    monkeypatch.setenv("PHOENIX_MIN_DB_CONNECTIONS", "50")
    assert main(["user", "disable", "--email", "a@example.com"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "DATABASE_URL: DATABASE_URL must start with postgresql://" in err
    assert "s3cr3t-pw" not in err


def test_cross_field_setting_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PHOENIX_MIN_DB_CONNECTIONS", "50")
    assert main(["serve"]) == EXIT_USAGE
    assert "PHOENIX_MIN_DB_CONNECTIONS must be <= PHOENIX_MAX_DB_CONNECTIONS" in capsys.readouterr().err


def test_console_script_settings_error_exit_code() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}
    env["PHOENIX_PORT"] = "not-a-port"
    result = subprocess.run(["phoenix-auth", "migrate"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "PHOENIX_PORT" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["user", "create", "--name", "x"],  # --email missing
        ["user", "create", "--email", "a@example.com", "--password", "inline-secret"],  # no plain passwords
        ["user", "disable"],  # no user given
        ["user", "disable", "--email", "a@example.com", "--user-id", "1"],  # both given
        ["migrate", "--index-set", "bogus"],
        ["migrate", "--lock-timeout", "-1"],
        ["seed-demo", "many"],
        ["seed-demo", "10", "--bcrypt-fraction", "1.5"],
        ["sessions", "revoke"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_USAGE
    assert "usage: phoenix-auth" in capsys.readouterr().err


def test_help_exits_0_and_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "exit codes:\n  0 ok" in out and "4 migration lock busy" in out


def test_unreachable_database_exits_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://phoenix:topsecret@127.0.0.1:{_closed_port()}/x")
    assert main(["migrate"]) == EXIT_DB_UNREACHABLE
    err = capsys.readouterr().err
    assert "cannot connect to the database (DATABASE_URL)" in err
    assert "topsecret" not in err
    assert main(["sessions", "revoke", "--email", "a@example.com"]) == EXIT_DB_UNREACHABLE


def test_serve_builds_settings_and_calls_server_run(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Settings] = []
    fake = types.ModuleType("phoenix_auth.server")
    fake.run = seen.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "phoenix_auth.server", fake)
    monkeypatch.setenv("PHOENIX_PORT", "4321")
    assert main(["serve"]) == 0
    assert len(seen) == 1 and seen[0].port == 4321


def test_password_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    args = cli.build_parser().parse_args(
        ["user", "set-password", "--email", "a@example.com", "--password-stdin"]
    )
    assert cli._read_password(args, io.StringIO("pa ss word\n")) == "pa ss word"  # spaces kept, newline not
    with pytest.raises(cli.UsageError, match="stdin held no password"):
        cli._read_password(args, io.StringIO(""))

    args = cli.build_parser().parse_args(["user", "set-password", "--email", "a@example.com"])
    monkeypatch.setenv("PHOENIX_NEW_PASSWORD", "from-env")
    assert cli._read_password(args, io.StringIO("")) == "from-env"
    monkeypatch.delenv("PHOENIX_NEW_PASSWORD")
    with pytest.raises(cli.UsageError, match="no password given"):
        cli._read_password(args, io.StringIO(""))  # not a terminal: never blocks on a prompt


def test_email_normalisation_and_validation() -> None:
    assert normalise_email("  Alice@Example.COM\n") == "alice@example.com"
    assert UserRef(email=" Bob@X.org ").email == "bob@x.org"
    for bad in ("", "alice", "a@b", "a b@example.com", "@example.com", "a@example.", "x" * 250 + "@e.com"):
        with pytest.raises(InvalidEmail):
            normalise_email(bad)


def test_role_validation() -> None:
    assert check_role(" admin ") == "admin"
    for bad in ("", "1admin", "ad min", "x" * 65, "admin;drop"):
        with pytest.raises(InvalidRole):
            check_role(bad)
