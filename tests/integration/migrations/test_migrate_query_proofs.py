"""`phoenix-auth migrate` proves the statements the service sends, not copies of them.

The proofs hold the very strings `db.py` sends (both import `queries.py`); a statement that stops
being looked up through its index fails the migration with IndexNotUsed.
"""

from __future__ import annotations

import dataclasses

import psycopg
import pytest

from phoenix_auth import db, migrations
from phoenix_auth.cli import EXIT_INDEX_NOT_USED, main
from phoenix_auth.migrations import PROOFS, IndexNotUsed, Migrator, QueryProof

pytestmark = pytest.mark.integration

SENT_ON_HOT_PATHS = {db.SQL_AUTH_RECORD, db.SQL_SESSION, db.SQL_USER_BY_ID}


def _proof(label: str) -> QueryProof:
    return next(p for p in PROOFS if p.label == label)


def _verify(url: str, *proofs: QueryProof) -> list[str]:
    lines: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        Migrator(conn, log=lines.append).verify(proofs)
    return lines


@pytest.fixture
def populated(migrated: str) -> str:
    """Tables big enough that the planner's own choice (no forcing) is what is proved."""
    with psycopg.connect(migrated, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users (id, email, hashed_password) "
            "SELECT 'user-' || g, 'u' || g || '@example.com', 'x' FROM generate_series(1, 5000) g"
        )
        conn.execute(
            "INSERT INTO phoenix_sessions (token_hash, user_id, expires_at) "
            "SELECT sha256(g::text::bytea), 'user-' || g, now() + interval '1 day' "
            "FROM generate_series(1, 5000) g"
        )
        conn.execute("VACUUM (ANALYZE) users")
        conn.execute("VACUUM (ANALYZE) phoenix_sessions")
    return migrated


def test_migrate_proves_each_statement_the_service_sends(
    migrated: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert {proof.query for proof in PROOFS} == SENT_ON_HOT_PATHS
    capsys.readouterr()
    assert main(["migrate"]) == 0
    out = capsys.readouterr().out
    assert "OK: login lookup is an Index Only Scan using idx_users_email_auth_covering" in out
    assert "OK: user-by-id lookup is an Index Only Scan using idx_users_id_session_data" in out
    assert "session lookup plan: " in out
    assert "Index Only Scan using idx_users_id_session_data on users" in out
    assert "using phoenix_sessions_pkey on phoenix_sessions" in out


@pytest.mark.parametrize(
    ("label", "old", "new"),
    [
        # lower() on the parameter as well: the index key no longer matches the predicate's shape.
        ("login lookup", "lower(email) = %s", "email = %s"),
        ("session lookup", "s.token_hash = %s", "substr(s.token_hash, 1) = %s"),
        ("user-by-id lookup", "id = %s", "id || '' = %s"),
    ],
)
def test_a_statement_that_stops_using_its_index_fails_the_proof(
    populated: str, label: str, old: str, new: str
) -> None:
    proof = _proof(label)
    assert old in proof.query
    lines = _verify(populated, proof)  # the statement as sent passes, by the planner's own choice
    assert "seq scan disabled" not in "\n".join(lines)
    altered = dataclasses.replace(proof, query=proof.query.replace(old, new))
    with pytest.raises(IndexNotUsed, match=label):
        _verify(populated, altered)


def test_index_not_used_is_the_migrate_exit_code(
    populated: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The service's login statement, edited so no index can serve it, makes migrate fail."""
    login = _proof("login lookup")
    altered = dataclasses.replace(login, query=login.query.replace("lower(email)", "email"))
    monkeypatch.setattr(migrations, "PROOFS", (altered,))
    assert main(["migrate"]) == EXIT_INDEX_NOT_USED
    assert "does not read users via idx_users_email_auth_covering" in capsys.readouterr().err
