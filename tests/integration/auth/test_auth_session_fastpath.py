"""GET /api/auth/session is answered by PhoenixApp's direct ASGI path; every other request goes
through Starlette. The two must be indistinguishable to a client: same status, same headers in the
same order, same bytes, same errors, same metrics."""

from __future__ import annotations

import logging
import time

import httpx
import pytest
from authtestkit import scrape, settings_env
from starlette.applications import Starlette

from phoenix_testkit.prometheus import metric_value

pytestmark = pytest.mark.integration

LOGIN = "/api/auth/phoenix"
SESSION = "/api/auth/session"
COOKIE = "__Host-phoenix_session"  # PHOENIX_COOKIE_NAME with the __Host- prefix (Secure)


def _starlette_client(app, client: httpx.AsyncClient) -> httpx.AsyncClient:
    """A client for the same app (same state, same lifespan) that bypasses the direct path."""

    async def through_starlette(scope, receive, send):
        await Starlette.__call__(app, scope, receive, send)

    transport = httpx.ASGITransport(app=through_starlette, client=(client.peer_ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="https://testserver")


async def _login(client, user) -> str:
    r = await client.post(LOGIN, json={"email": user.email, "password": user.password})
    assert r.status_code == 200, r.text
    client.cookies.clear()
    return r.json()["session"]["sessionId"]


def _same(fast: httpx.Response, slow: httpx.Response) -> None:
    assert fast.status_code == slow.status_code
    assert fast.headers.raw == slow.headers.raw
    assert fast.content == slow.content


async def test_direct_path_answers_exactly_like_the_starlette_route(app_client, make_user, sql):
    app, client = app_client
    user = make_user(role="editor")
    sql("UPDATE users SET name = %s WHERE id = %s", ('Zoë "Q" \\ \u2028 \U0001f600', user.id))
    token = await _login(client, user)
    async with _starlette_client(app, client) as slow:
        requests: list[tuple[dict[str, str], dict[str, str]]] = [
            ({"Authorization": f"Bearer {token}"}, {}),
            ({"Authorization": f"bearer   {token}  "}, {}),
            ({}, {COOKIE: token}),
            ({"Authorization": "Basic dXNlcjpwYXNz"}, {COOKIE: token}),  # falls back to the cookie
            ({}, {}),
            ({"Authorization": "Bearer "}, {}),
            ({"Authorization": "Bearer not-a-token"}, {}),
            ({"Authorization": "Bearer " + "A" * 43}, {}),
            ({}, {"other": "x"}),
        ]
        await client.get(
            SESSION, headers={"Authorization": f"Bearer {token}"}
        )  # warm L1: cacheHits 2 on both
        for headers, cookies in requests:
            for c in (client, slow):
                c.cookies.clear()
                c.cookies.update(cookies)
            _same(await client.get(SESSION, headers=headers), await slow.get(SESSION, headers=headers))
        client.cookies.clear()
        slow.cookies.clear()
        ok = await client.get(SESSION, headers={"Authorization": f"Bearer {token}"})
        assert ok.json()["user"]["name"] == 'Zoë "Q" \\ \u2028 \U0001f600'
        assert ok.headers["cache-control"] == "no-store" and ok.headers["content-type"] == "application/json"
        # HEAD still goes through Starlette: the GET's headers, no body.
        head = await client.head(SESSION, headers={"Authorization": f"Bearer {token}"})
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == ok.headers["content-length"]
        # A revoked session is refused on both paths.
        await client.post("/api/auth/logout", headers={"Authorization": f"Bearer {token}"})
        fast_r = await client.get(SESSION, headers={"Authorization": f"Bearer {token}"})
        slow_r = await slow.get(SESSION, headers={"Authorization": f"Bearer {token}"})
        assert fast_r.status_code == 401 and fast_r.json()["error"] == "INVALID_SESSION"
        _same(fast_r, slow_r)
        # Other methods on the path are Starlette's 405, unchanged.
        r = await client.post(SESSION)
        assert r.status_code == 405 and r.json()["error"] == "METHOD_NOT_ALLOWED"


async def test_unexpected_error_is_a_logged_500_on_both_paths(app_client, make_user, caplog):
    app, client = app_client
    token = await _login(client, make_user())

    async def broken(_token: str):
        raise RuntimeError("boom")

    app.resources.sessions.validate = broken
    async with _starlette_client(app, client) as slow:
        with caplog.at_level(logging.ERROR, logger="phoenix_auth.app"):
            fast_r = await client.get(SESSION, headers={"Authorization": f"Bearer {token}"})
        slow_r = await slow.get(SESSION, headers={"Authorization": f"Bearer {token}"})
    assert fast_r.status_code == 500 and fast_r.json()["error"] == "INTERNAL_ERROR"
    _same(fast_r, slow_r)
    assert any(rec.getMessage() == "unhandled error" for rec in caplog.records)
    assert token not in caplog.text


async def test_direct_path_counts_requests_and_outcomes(app_client, make_user):
    app, client = app_client
    token = await _login(client, make_user())
    for _ in range(5):
        assert (await client.get(SESSION, headers={"Authorization": f"Bearer {token}"})).status_code == 200
    for _ in range(2):
        assert (await client.get(SESSION)).status_code == 401
    text = await scrape(app)

    http = "phoenix_http_request_duration_seconds_count"
    route = {"method": "GET", "route": "/api/auth/session"}
    assert metric_value(text, http, status="200", **route) == 5
    assert metric_value(text, http, status="401", **route) == 2
    assert metric_value(text, "phoenix_sessions_validated_total", outcome="valid") == 5
    assert metric_value(text, "phoenix_sessions_validated_total", outcome="missing") == 2


def _l1_hits(client: httpx.Client, base: str) -> int:
    """This connection's worker's own L1 hit count (the health JSON is per worker)."""
    return client.get(base + "/api/phoenix/health", timeout=5).json()["cache"]["metrics"]["l1Hits"]


@pytest.mark.slow
def test_a_scrape_includes_the_other_workers_deferred_counts_within_a_second(
    database_url, redis_server, start_service, make_user
):
    """Hot-path counts are pushed every FLUSH_INTERVAL: a scrape answered by the worker that did
    NOT serve the session checks still reports all of them within ~1 s, and never more."""
    svc = start_service(settings_env(database_url, redis_server.url), workers=2)
    base = svc.base_url
    user = make_user()
    token = httpx.post(
        base + LOGIN, json={"email": user.email, "password": user.password}, timeout=10
    ).json()["session"]["sessionId"]
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}) as a:  # one keep-alive connection
        for _ in range(20):
            assert a.get(base + SESSION, timeout=10).status_code == 200
        hits_a = _l1_hits(a, base)
        assert hits_a >= 38
        # Find an admin-port connection served by the other worker (its own L1 hit count differs).
        admin = svc.admin_url
        for _ in range(100):
            b = httpx.Client()
            if _l1_hits(b, admin) != hits_a:
                break
            b.close()
        else:
            pytest.fail("no connection reached the second worker")
        try:
            deadline = time.monotonic() + 1.2
            while True:
                text = b.get(admin + "/metrics", timeout=5).text
                counts = (
                    metric_value(text, "phoenix_sessions_validated_total", outcome="valid"),
                    metric_value(
                        text,
                        "phoenix_http_request_duration_seconds_count",
                        method="GET",
                        route="/api/auth/session",
                        status="200",
                    ),
                )
                assert counts[0] <= 20 and counts[1] <= 20
                if counts == (20, 20) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert counts == (20, 20)
            assert _l1_hits(b, admin) != _l1_hits(a, base)  # still the other worker
        finally:
            b.close()
