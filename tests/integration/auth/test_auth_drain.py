"""Draining before shutdown (the auth pod's preStop hook, `phoenix-auth drain`): while it runs, the
server still answers on both ports, every response asks its client to close the connection (so
keep-alive clients move to other pods before SIGTERM), and /readyz says not ready."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from authtestkit import settings_env

pytestmark = pytest.mark.integration


def test_drain_makes_every_response_close_its_connection_and_readyz_unready(
    database_url, redis_server, start_service, make_user, tmp_path: Path
):
    env = settings_env(database_url, redis_server.url, TMPDIR=str(tmp_path))
    (tmp_path / "phoenix-auth.draining").touch()  # left by a previous container: cleared at start
    svc = start_service(env)
    user = make_user()
    with httpx.Client(base_url=svc.base_url, timeout=5) as client:
        login = client.post("/api/auth/phoenix", json={"email": user.email, "password": user.password})
        assert login.status_code == 200
        token = login.json()["session"]["sessionId"]
        session = client.get("/api/auth/session", headers={"Authorization": f"Bearer {token}"})
        assert session.status_code == 200 and "connection" not in session.headers
        assert client.get("/readyz").json()["ready"] is True

        drain = subprocess.Popen(
            [sys.executable, "-m", "phoenix_auth.cli", "drain", "--seconds", "3"],
            env={**os.environ, **env},
        )
        time.sleep(1.0)  # the workers look for the mark every 0.2 s
        for path in ("/api/auth/session", "/api/phoenix/health"):  # the direct path and Starlette's
            r = client.get(path, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
            assert r.headers["connection"] == "close"
        ready = client.get("/readyz")
        assert (ready.status_code, ready.json()["ready"], ready.json()["draining"]) == (503, False, True)
        admin = httpx.get(f"{svc.admin_url}/healthz", timeout=5)
        assert admin.headers["connection"] == "close"
        started = time.monotonic()
        assert drain.wait(timeout=10) == 0
        assert time.monotonic() - started < 3  # it held off for about --seconds, then returned
