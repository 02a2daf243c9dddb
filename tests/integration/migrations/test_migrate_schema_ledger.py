"""Schema migrations are ordered and named: a database that has some runs only the new ones."""

from __future__ import annotations

import psycopg
import pytest

from phoenix_auth import migrations
from phoenix_auth.cli import EXIT_FAILURE, main
from phoenix_auth.migrations import LEGACY_SCHEMA_ROW, SCHEMA_LEDGER, SchemaMigration, schema_migrations

pytestmark = pytest.mark.integration

NEW = SchemaMigration("9999_test_note.sql", "ALTER TABLE users ADD COLUMN IF NOT EXISTS test_note text;\n")


def _trigger_oid(url: str) -> int:
    """Re-applying 0001 drops and re-creates its triggers: a new oid says it ran again."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT oid FROM pg_trigger WHERE tgname = 'phoenix_users_invalidate'").fetchone()
        assert row is not None
        return int(row[0])


def _ledger(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute(f"SELECT name, checksum FROM {SCHEMA_LEDGER}").fetchall())


def test_an_applied_database_runs_only_the_new_migration(
    migrated: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = schema_migrations()
    assert [m.name for m in shipped] == ["0001_schema.sql", "0002_discard_session.sql"]
    assert _ledger(migrated) == {m.name: m.checksum for m in shipped}
    before = _trigger_oid(migrated)

    monkeypatch.setattr(migrations, "schema_migrations", lambda: [*shipped, NEW])
    capsys.readouterr()
    assert main(["migrate"]) == 0
    out = capsys.readouterr().out
    assert "apply 9999_test_note.sql: done" in out
    assert "0001_schema.sql: applied " in out and "apply 0001_schema.sql" not in out
    assert _trigger_oid(migrated) == before
    assert _ledger(migrated) == {m.name: m.checksum for m in [*shipped, NEW]}
    with psycopg.connect(migrated) as conn:
        conn.execute("SELECT test_note FROM users LIMIT 0")

    assert main(["migrate"]) == 0  # and a third run applies nothing
    assert "apply " not in capsys.readouterr().out


def test_a_database_of_the_single_file_ledger_is_not_migrated_again(
    migrated: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first = schema_migrations()[0]
    with psycopg.connect(migrated) as conn:
        conn.execute(f"DELETE FROM {SCHEMA_LEDGER}")
        conn.execute(
            f"INSERT INTO {SCHEMA_LEDGER} (name, checksum) VALUES (%s, %s)",
            (LEGACY_SCHEMA_ROW, first.checksum),
        )
    before = _trigger_oid(migrated)
    capsys.readouterr()
    assert main(["migrate"]) == 0
    assert "apply 0001_schema.sql" not in capsys.readouterr().out
    assert _trigger_oid(migrated) == before
    assert _ledger(migrated)[first.name] == first.checksum


def test_an_edited_applied_migration_fails_and_changes_nothing(
    migrated: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first = schema_migrations()[0]
    edited = SchemaMigration(first.name, first.sql + "\n-- edited\n")
    monkeypatch.setattr(migrations, "schema_migrations", lambda: [edited])
    before = _trigger_oid(migrated)
    capsys.readouterr()
    assert main(["migrate"]) == EXIT_FAILURE
    assert "0001_schema.sql was applied on " in capsys.readouterr().err
    assert _trigger_oid(migrated) == before
    assert _ledger(migrated)[first.name] == first.checksum
