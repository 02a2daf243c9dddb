"""The service's own lookups are answered from the seed's covering indexes (index-only scans)."""

from __future__ import annotations

import psycopg
import pytest

from phoenix_auth import db

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("query", "param", "index"),
    [
        (db.SQL_AUTH_RECORD, "someone@example.com", "idx_users_email_auth_covering"),
        (db.SQL_USER_BY_ID, "some-id", "idx_users_id_session_data"),
    ],
)
def test_lookup_is_an_index_only_scan(database_url, make_user, query, param, index):
    for _ in range(20):
        make_user()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) users")
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET enable_bitmapscan = off")
        plan = "\n".join(row[0] for row in conn.execute("EXPLAIN " + query, (param,)))
    assert "Index Only Scan" in plan and index in plan, plan
