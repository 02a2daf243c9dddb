"""`phoenix-auth migrate` on a real PostgreSQL: schema, the seed's indexes, their verification and repair."""

from __future__ import annotations

import json
import threading
import time

import psycopg
import pytest

from phoenix_auth.cli import EXIT_DUPLICATE_EMAILS, EXIT_LOCKED, main
from phoenix_auth.migrations import AUTH_COVERING, MIGRATION_LOCK_KEY, SESSION_DATA, index_state
from phoenix_auth.queries import SQL_AUTH_RECORD

pytestmark = pytest.mark.integration

COVERING = "idx_users_email_auth_covering"
SESSION_IDX = "idx_users_id_session_data"


def _index_oid(url: str, name: str) -> int | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT to_regclass(%s)::oid", (name,)).fetchone()
        return row[0] if row else None


def _states(url: str) -> dict[str, tuple[bool, str] | None]:
    with psycopg.connect(url) as conn:
        out: dict[str, tuple[bool, str] | None] = {}
        for name in (COVERING, SESSION_IDX):
            state = index_state(conn, name)
            out[name] = None if state is None else (state.valid, state.definition)
        return out


def _insert_users(url: str, count: int) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO users (email, name, role, hashed_password, team_name) "
            "SELECT 'u' || g || '@example.com', 'User ' || g, 'user', '$argon2id$fake' || g, 'team' "
            "FROM generate_series(1, %s) g",
            (count,),
        )


def _login_plan(url: str) -> dict:
    """EXPLAIN the login statement the service sends, with its parameter bound."""
    with psycopg.connect(url) as conn:
        row = conn.execute("EXPLAIN (FORMAT JSON) " + SQL_AUTH_RECORD, ("u7@example.com",)).fetchone()
        return row[0][0]["Plan"]


def test_fresh_migrate_creates_schema_and_valid_indexes(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate"]) == 0
    out = capsys.readouterr().out

    with psycopg.connect(cli_env) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        triggers = {r[0] for r in conn.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")}
    assert {"users", "phoenix_sessions"} <= tables
    assert {"phoenix_users_invalidate", "phoenix_sessions_invalidate"} <= triggers
    states = _states(cli_env)
    assert states[COVERING] == (True, AUTH_COVERING.expected_definition)
    assert states[SESSION_IDX] == (True, SESSION_DATA.expected_definition)
    assert "CREATE UNIQUE INDEX " in AUTH_COVERING.expected_definition
    assert f"CREATE UNIQUE INDEX CONCURRENTLY {COVERING}: done" in out
    assert f"login lookup plan: Index Only Scan using {COVERING}" in out
    assert "migrate complete: built" in out


def test_second_migrate_is_a_noop_that_still_verifies(
    migrated: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    before = (_index_oid(migrated, COVERING), _index_oid(migrated, SESSION_IDX))

    assert main(["migrate"]) == 0
    out = capsys.readouterr().out

    assert (_index_oid(migrated, COVERING), _index_oid(migrated, SESSION_IDX)) == before  # not rebuilt
    assert "CREATE" not in out and "DROP" not in out
    assert "0001_schema.sql: applied " in out and "apply 0001_schema.sql" not in out
    assert f"{COVERING}: present and valid, nothing to do" in out
    assert f"OK: login lookup is an Index Only Scan using {COVERING}" in out


def test_login_query_plan_is_index_only_scan_on_covering_index(cli_env: str) -> None:
    assert main(["migrate"]) == 0
    _insert_users(cli_env, 5000)  # big enough that the planner prefers the index on its own
    assert main(["migrate"]) == 0  # VACUUM (ANALYZE) sets the visibility map for the new pages

    plan = _login_plan(cli_env)
    assert plan["Node Type"] == "Index Only Scan", json.dumps(plan)
    assert plan["Index Name"] == COVERING


def test_rollback_drops_both_indexes_and_migrate_rebuilds(
    migrated: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _insert_users(migrated, 100)
    assert main(["migrate", "--rollback"]) == 0
    out = capsys.readouterr().out
    assert f"DROP INDEX CONCURRENTLY IF EXISTS {COVERING}" in out
    assert _states(migrated) == {COVERING: None, SESSION_IDX: None}
    with psycopg.connect(migrated) as conn:  # data and tables untouched
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 100

    assert main(["migrate", "--rollback"]) == 0  # idempotent
    assert "did not exist" in capsys.readouterr().out

    assert main(["migrate", "--index-set", "seed"]) == 0
    assert _states(migrated)[COVERING] == (True, AUTH_COVERING.expected_definition)
    assert _states(migrated)[SESSION_IDX] == (True, SESSION_DATA.expected_definition)


def test_invalid_index_from_failed_build_is_detected_and_rebuilt(
    migrated: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", "--rollback"]) == 0
    with psycopg.connect(migrated, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users (email, hashed_password) "
            "VALUES ('dup@example.com', 'x'), ('DUP@example.com', 'y')"
        )
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                f"CREATE UNIQUE INDEX CONCURRENTLY {COVERING} ON users (lower(email)) "
                "INCLUDE (id, email, name, role, hashed_password, team_name, disabled, password_changed_at)"
            )
        conn.execute("DELETE FROM users WHERE email = 'DUP@example.com'")
    assert _states(migrated)[COVERING] is not None
    assert _states(migrated)[COVERING][0] is False  # left INVALID by the failed build
    capsys.readouterr()

    assert main(["migrate"]) == 0
    out = capsys.readouterr().out

    assert f"{COVERING} is INVALID" in out
    assert f"DROP INDEX CONCURRENTLY {COVERING} (invalid)" in out
    assert f"rebuilt INVALID {COVERING}" in out
    assert _states(migrated)[COVERING] == (True, AUTH_COVERING.expected_definition)


def test_case_duplicate_emails_fail_before_building_and_lose_nothing(
    migrated: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", "--rollback"]) == 0
    with psycopg.connect(migrated) as conn:
        conn.execute(
            "INSERT INTO users (email, hashed_password) VALUES "
            "('ann@example.com', 'a1'), ('Ann@Example.com', 'a2'), ('bob@example.com', 'b1'), "
            "('BOB@example.com', 'b2'), ('BoB@example.com', 'b3'), ('carl@example.com', 'c1')"
        )
        before = conn.execute("SELECT id, email, hashed_password FROM users ORDER BY id").fetchall()
    capsys.readouterr()

    assert main(["migrate"]) == EXIT_DUPLICATE_EMAILS
    captured = capsys.readouterr()

    assert "2 email address(es) appear more than once" in captured.err
    assert "(5 rows in total)" in captured.err
    assert "'Ann@Example.com', 'ann@example.com'" in captured.err
    assert "Traceback" not in captured.err
    assert "CREATE UNIQUE INDEX CONCURRENTLY" not in captured.out  # detected before building
    assert _states(migrated)[COVERING] is None  # no INVALID leftover blocking inserts
    with psycopg.connect(migrated) as conn:
        assert conn.execute("SELECT id, email, hashed_password FROM users ORDER BY id").fetchall() == before


def test_second_migrate_fails_cleanly_while_the_lock_is_held(
    migrated: str, capsys: pytest.CaptureFixture[str]
) -> None:
    holder = psycopg.connect(migrated, autocommit=True)
    holder_pid = holder.info.backend_pid
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        capsys.readouterr()
        started = time.monotonic()
        code = main(["migrate", "--lock-timeout", "1"])
        waited = time.monotonic() - started
        captured = capsys.readouterr()
    finally:
        holder.close()

    assert code == EXIT_LOCKED
    assert 1.0 <= waited < 8.0
    assert "another phoenix-auth migrate is running on this database" in captured.err
    assert f"pid {holder_pid}" in captured.err
    assert "waiting up to 1s for the migration lock" in captured.out
    assert "Traceback" not in captured.err
    assert main(["migrate"]) == 0  # the lock went with the holder's session


def test_migrate_waits_for_the_lock_and_then_proceeds(
    migrated: str, capsys: pytest.CaptureFixture[str]
) -> None:
    holder = psycopg.connect(migrated, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
    timer = threading.Timer(1.0, holder.close)
    timer.start()
    try:
        assert main(["migrate", "--lock-wait", "15"]) == 0
    finally:
        timer.cancel()
        holder.close()
    assert "migration lock acquired" in capsys.readouterr().out


def test_build_waiting_for_a_writer_reports_progress(
    migrated: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """CONCURRENTLY waits for open write transactions; the wait shows up as progress, then completes."""
    assert main(["migrate", "--rollback"]) == 0
    writer = psycopg.connect(migrated)
    writer.execute("UPDATE users SET name = name WHERE false")  # holds ROW EXCLUSIVE until commit
    timer = threading.Timer(2.0, writer.commit)
    timer.start()
    capsys.readouterr()
    try:
        assert main(["migrate", "--progress-interval", "0.5"]) == 0
    finally:
        timer.cancel()
        writer.close()
    out = capsys.readouterr().out
    assert "progress: phase: waiting for writers before build" in out
    assert _states(migrated)[COVERING] == (True, AUTH_COVERING.expected_definition)
