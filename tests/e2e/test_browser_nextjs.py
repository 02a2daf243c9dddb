"""The app developer's side end to end: the example Next.js app (examples/nextjs: Auth.js with the
Phoenix Credentials provider, the session guard in proxy.ts) in headless Chromium against the real
auth service, PostgreSQL and Redis.

scripts/test.sh installs Chromium and builds the client package and the example first; outside CI
a missing piece skips, in CI it fails (e2e_kube.unavailable). Screenshots: .phoenix/artifacts/browser/.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from e2e_kube import unavailable

from phoenix_testkit.databases import migrated_database
from phoenix_testkit.hashes import fast_hash
from phoenix_testkit.ports import free_port
from phoenix_testkit.redis import RedisServer
from phoenix_testkit.service import ServiceProcess, service_env

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "nextjs"
SHOTS = ROOT / ".phoenix" / "artifacts" / "browser"
ADMIN_URL = os.environ.get(
    "PHOENIX_TEST_ADMIN_URL", "postgresql://phoenix:phoenix@127.0.0.1:5432/phoenix_test"
)
ADMIN_TOKEN = "browser-test-admin-token-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, str]]:
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).exists() or shutil.which("node") is None:
        unavailable(f"Chromium ({chromium}) or node missing: bash scripts/install-deps.sh")
    if (
        not (APP / ".next" / "BUILD_ID").exists()
        or not (APP / "node_modules" / "@phoenix-auth" / "client").exists()
    ):
        unavailable("the example app is not built: see examples/nextjs/README.md (scripts/test.sh does it)")
    redis = RedisServer()
    redis.start()
    with migrated_database(ADMIN_URL) as db:
        password = secrets.token_urlsafe(12)
        email = f"browser-{uuid.uuid4().hex[:8]}@example.com"
        with psycopg.connect(db, autocommit=True) as conn:
            row = conn.execute(
                "INSERT INTO users (email, name, hashed_password) "
                "VALUES (%s, 'Browser User', %s) RETURNING id",
                (email, fast_hash(password)),
            ).fetchone()
        assert row is not None
        env = service_env(
            db,
            redis.url,
            PHOENIX_ADMIN_TOKEN=ADMIN_TOKEN,
            PHOENIX_TRUSTED_PROXIES="127.0.0.1/32",
            PHOENIX_THROTTLE_FREE_FAILURES="2",
            PHOENIX_THROTTLE_BASE_DELAY="30",
        )
        service = ServiceProcess(["phoenix-auth", "serve"], env, log_prefix="phoenix-browser-")
        port = free_port()
        SHOTS.mkdir(parents=True, exist_ok=True)
        app_log = open(ROOT / ".phoenix" / "nextjs-example.log", "wb")  # noqa: SIM115 (closed below)
        app = None
        try:
            service.wait_until("/readyz", lambda status, _body: status == 200, timeout=60)
            app = subprocess.Popen(
                ["node", "node_modules/next/dist/bin/next", "start", "-p", str(port), "-H", "127.0.0.1"],
                cwd=APP,
                env={
                    **os.environ,
                    "PHOENIX_URL": service.base_url,
                    "PHOENIX_SESSION_CACHE_MS": "1000",
                    "AUTH_SECRET": secrets.token_urlsafe(32),
                    "NEXT_TELEMETRY_DISABLED": "1",
                },
                stdout=app_log,
                stderr=subprocess.STDOUT,
            )
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2):
                        break
                except OSError:
                    if time.monotonic() > deadline or app.poll() is not None:
                        raise RuntimeError(
                            (ROOT / ".phoenix" / "nextjs-example.log").read_text()[-3000:]
                        ) from None
                    time.sleep(0.3)
            yield {
                "app": f"http://127.0.0.1:{port}",
                "admin": service.admin_url,
                "email": email,
                "password": password,
                "user_id": row[0],
                "chromium": chromium,
            }
        finally:
            if app is not None:
                app.terminate()
                app.wait(timeout=20)
            app_log.close()
            service.cleanup()
            redis.stop()


def test_login_reload_logout_revoke_and_throttle_in_a_real_browser(stack: dict[str, str]) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            "node",
            "e2e/browser.mjs",
            stack["app"],
            stack["admin"],
            ADMIN_TOKEN,
            stack["email"],
            stack["password"],
            stack["user_id"],
            str(SHOTS),
        ],
        cwd=APP,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "CHROMIUM": stack["chromium"]},
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-2000:]
    steps = {s["step"]: s for s in map(json.loads, done.stdout.splitlines())}
    assert steps["anonymous"]["path"] == "/login"  # the guard sends an anonymous visitor to the form
    assert steps["wrong-password"]["path"] == "/login"
    assert steps["wrong-password"]["error"] == "Wrong email or password."
    assert steps["signed-in"] == {
        "step": "signed-in",
        "path": "/protected",
        "user": f"Signed in as {stack['email']}",
    }
    assert steps["reloaded"]["path"] == "/protected"  # the session survives a reload
    assert steps["after-logout"]["path"] == "/login"  # logout ended it (Phoenix and the app)
    assert steps["after-revoke"] == {"step": "after-revoke", "revokeStatus": 200, "path": "/login"}
    error = steps["throttled"]["error"] or ""
    assert error.startswith("Too many attempts: try again in ") and error.endswith(" s."), error
    for shot in ("1-login", "2-wrong-password", "3-protected", "4-throttled"):
        assert (SHOTS / f"{shot}.png").stat().st_size > 1000
