"""`scripts/bench --smoke` end to end: seeds a private database, serves naive and Phoenix, drives
load, and publishes tables + JSON whose numbers come from real responses (not a timed test: it
only checks that the harness measures what it says)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from phoenix_testkit.databases import drop_database

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADMIN_URL = os.environ.get("PHOENIX_TEST_PG_URL", "postgresql://phoenix:phoenix@127.0.0.1:5432/phoenix")


def test_smoke_pass_measures_both_apps(tmp_path: Path) -> None:
    database = f"phoenix_t_h5_{secrets.token_hex(4)}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_") or k == "PHOENIX_TEST_PG_URL"}
    env.update(DATABASE_URL=ADMIN_URL, PHOENIX_ARGON2_MEMORY_KIB="8192", PHOENIX_ARGON2_TIME_COST="1")
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "phoenix_bench",
                "--smoke",
                "--database",
                database,
                "--out",
                str(tmp_path),
                "--client",
                "python",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        drop_database(ADMIN_URL, database)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[bench" in proc.stderr  # progress lines while it runs
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["machine"]["nproc"] >= 1
    assert "Index Only Scan" in results["lookup_plan"]
    for app in ("naive", "phoenix"):
        measured = results["median"]["apps"][app]
        assert measured["login_sweep"][0]["completed_ok"] > 0, app
        assert measured["login_sweep"][0]["latency"]["p50_ms"] > 0, app
        assert measured["session_sweep"][0]["completed_ok"] > 0, app
        assert measured["noop_closed"]["ok_per_s"] > 0, app
    # Phoenix's own counters answered: the session mix is served from its cache
    assert results["median"]["apps"]["phoenix"]["session_cache"]["hit_ratio"] > 0.5
    tables = (tmp_path / "tables.md").read_text()
    assert "Table 1" in tables and "Table 2" in tables and "150-300 ms" in tables
    assert tables in proc.stdout
