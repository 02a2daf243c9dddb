"""Budget detection against the real local PostgreSQL (read-only: settings and pg_stat_activity)."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from phoenix_operator.errors import BudgetDetectionFailed
from phoenix_operator.pool_sizing import detect_budget

URL = "postgresql://phoenix:phoenix@127.0.0.1:5432/phoenix"
pytestmark = pytest.mark.integration


def test_detects_max_connections_minus_reserved_and_others():
    with psycopg.connect(URL) as conn:
        max_conn = int(conn.execute("SHOW max_connections").fetchone()[0])
        reserved = int(conn.execute("SHOW superuser_reserved_connections").fetchone()[0])
        # A connection held by "someone else" (not phoenix-auth) while we detect.
        with psycopg.connect(URL, application_name="other-app"):
            detected = asyncio.run(detect_budget(URL))
    assert (detected.max_connections, detected.superuser_reserved) == (max_conn, reserved)
    assert detected.held_by_others >= 2  # `conn` above and other-app
    assert detected.budget == max_conn - reserved - detected.held_by_others
    assert 0 < detected.budget < max_conn


def test_unreachable_database_is_transient_and_hides_the_url():
    with pytest.raises(BudgetDetectionFailed) as info:
        asyncio.run(
            detect_budget("postgresql://phoenix:hunter2-secret@127.0.0.1:9/phoenix", connect_timeout=1)
        )
    assert "hunter2-secret" not in str(info.value)
    assert info.value.delay > 0
