"""The TypeScript client (clients/phoenix-client) against the real service: its generated types
match what the service serves, and its calls behave as an app developer reads in its README.

Needs Node and the package's build (scripts/test.sh runs `npm ci` and `npm run build` first)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from authtestkit import settings_env

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "clients" / "phoenix-client"
ADMIN_TOKEN = "ts-client-test-admin-token-0123456789abcdef"
GENERATED = ("schema.ts", "admin-schema.ts", "error-codes.ts")


def _need_build() -> None:
    if shutil.which("node") is None or not (PACKAGE / "dist" / "src" / "index.js").exists():
        message = "the TypeScript client is not built: cd clients/phoenix-client && npm ci && npm run build"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def test_generated_types_match_what_the_service_serves(tmp_path: Path) -> None:
    _need_build()
    subprocess.run(
        [sys.executable, str(PACKAGE / "scripts" / "gen.py"), "--out", str(tmp_path)], check=True, timeout=180
    )
    stale = [
        name for name in GENERATED if (tmp_path / name).read_text() != (PACKAGE / "src" / name).read_text()
    ]
    assert not stale, (
        f"{stale} differ from the running service: run python clients/phoenix-client/scripts/gen.py"
    )


def test_client_login_session_logout_revoke_and_throttle(
    database_url, redis_server, start_service, make_user
) -> None:
    _need_build()
    user = make_user()
    env = settings_env(
        database_url,
        redis_server.url,
        PHOENIX_ADMIN_TOKEN=ADMIN_TOKEN,
        PHOENIX_THROTTLE_FREE_FAILURES="2",
        PHOENIX_THROTTLE_BASE_DELAY="30",
    )
    service = start_service(env)
    done = subprocess.run(
        [
            "node",
            str(PACKAGE / "test" / "live.mjs"),
            service.base_url,
            service.admin_url,
            ADMIN_TOKEN,
            user.email,
            user.password,
            user.id,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    steps = {line["step"]: line for line in map(json.loads, done.stdout.splitlines())}
    assert steps["login"] == {"step": "login", "user": user.email, "token": True}
    assert steps["session"]["user"] == user.id
    assert steps["after-logout"] == {
        "step": "after-logout",
        "error": "INVALID_SESSION",
        "status": 401,
        "retryAfter": None,
    }
    assert steps["revoke"]["revoked"] >= 1
    assert steps["after-revoke"]["error"] == "INVALID_SESSION"
    assert steps["bad-admin-token"]["error"] == "ADMIN_UNAUTHORIZED"
    # The session guard (Next.js middleware): within cacheMs a page request asks Phoenix once, not
    # per check, so a cached answer costs a map lookup (typically well under 0.1 ms; the time is
    # printed, and judged only against the uncached check, since a loaded machine stretches both).
    cached, uncached = steps["guard-cached"], steps["guard-uncached"]
    print(
        f"\n[ts-client] guard per request: cached p50 {cached['p50']:.3f} / p99 {cached['p99']:.3f} ms, "
        f"uncached p50 {uncached['p50']:.2f} / p99 {uncached['p99']:.2f} ms"
    )
    assert (cached["checks"], cached["requests"]) == (500, 1), cached
    assert (uncached["checks"], uncached["requests"]) == (500, 500), uncached
    assert cached["p50"] < uncached["p50"] / 5, (cached, uncached)
    answers = steps["wrong"]["answers"]
    # Wrong passwords are INVALID_CREDENTIALS until the account's free failures are used; then
    # the client sees THROTTLED with the seconds to wait, never a wrong-password error.
    assert answers[0]["error"] == "INVALID_CREDENTIALS"
    throttled = [a for a in answers if a["error"] == "THROTTLED"]
    assert throttled and all(a["status"] == 429 and a["retryAfter"] >= 1 for a in throttled)
