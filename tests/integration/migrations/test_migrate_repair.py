"""migrate repairs what it finds: an interrupted build, a look-alike index, and refuses an unused index."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from psycopg import sql

from phoenix_auth.cli import EXIT_FAILURE, EXIT_INDEX_NOT_USED, main
from phoenix_auth.migrations import AUTH_COVERING, index_state

pytestmark = pytest.mark.integration

COVERING = AUTH_COVERING.name


def _covering(url: str) -> tuple[bool, str] | None:
    with psycopg.connect(url) as conn:
        state = index_state(conn, COVERING)
        return None if state is None else (state.valid, state.definition)


def test_build_interrupted_mid_way_is_repaired_by_the_next_run(
    migrated: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", "--rollback"]) == 0
    writer = psycopg.connect(migrated)
    writer.execute("UPDATE users SET name = name WHERE false")  # the build waits for this transaction
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(main(["migrate", "--lock-timeout", "3"])))
    runner.start()
    try:
        with psycopg.connect(migrated, autocommit=True) as admin:
            deadline = time.monotonic() + 10
            pid = None
            while pid is None and time.monotonic() < deadline:
                row = admin.execute(
                    "SELECT pid FROM pg_stat_progress_create_index WHERE datname = current_database()"
                ).fetchone()
                pid = row[0] if row else None
                time.sleep(0.05)
            assert pid is not None, "the index build never started"
            admin.execute("SELECT pg_cancel_backend(%s)", (pid,))  # the interruption
        runner.join(timeout=20)
    finally:
        writer.commit()
        writer.close()
    captured = capsys.readouterr()
    assert result == [EXIT_FAILURE]
    assert f"building {COVERING} was cancelled" in captured.err
    # Its own clean-up could not drop the INVALID index while the writer was open.
    assert f"could not drop the INVALID {COVERING}" in captured.out
    assert _covering(migrated) == (False, AUTH_COVERING.expected_definition)

    assert main(["migrate"]) == 0
    assert f"{COVERING} is INVALID" in capsys.readouterr().out
    assert _covering(migrated) == (True, AUTH_COVERING.expected_definition)


def test_lookalike_index_with_the_seeds_name_is_rebuilt(
    migrated: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hand-run seed script may have made a case-sensitive, non-unique index under the same name."""
    assert main(["migrate", "--rollback"]) == 0
    with psycopg.connect(migrated, autocommit=True) as conn:
        conn.execute(f"CREATE INDEX {COVERING} ON users (email) INCLUDE (id, name, role, hashed_password)")
    capsys.readouterr()

    assert main(["migrate"]) == 0
    out = capsys.readouterr().out
    assert "differs from the seed's definition" in out
    assert _covering(migrated) == (True, AUTH_COVERING.expected_definition)


def test_migrate_fails_when_the_login_query_cannot_use_the_index(
    migrated: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(migrated, autocommit=True) as conn:
        dbname = conn.info.dbname
        for setting in ("enable_indexscan", "enable_indexonlyscan", "enable_bitmapscan"):
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET {} = off").format(
                    sql.Identifier(dbname), sql.Identifier(setting)
                )
            )
    capsys.readouterr()

    assert main(["migrate"]) == EXIT_INDEX_NOT_USED
    captured = capsys.readouterr()
    assert f"the login lookup does not read users via {COVERING}: plan is Seq Scan" in captured.err
    assert '"Node Type": "Seq Scan"' in captured.err  # the plan is printed for the operator
