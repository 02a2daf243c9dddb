"""Two listeners, the session cookie, logout and request bodies, against real processes and sockets.

- The admin API and /metrics exist only on PHOENIX_ADMIN_PORT; the public port answers 404 for
  them; probes and the seed's health JSON answer on both; an empty admin token stops start-up.
- The session cookie is `__Host-` prefixed (Secure, Path=/, no Domain); an unprefixed cookie a
  sibling subdomain could plant is not read.
- Logout takes no body or a JSON one: a cross-site HTML form cannot log anyone out.
- A client that writes a 5 MiB body before reading gets the 400, not a connection reset.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
from authtestkit import ServiceProcess, free_port, running_app, settings_env

pytestmark = pytest.mark.integration

LOGIN = "/api/auth/phoenix"
SESSION = "/api/auth/session"
LOGOUT = "/api/auth/logout"
ADMIN_TOKEN = "listener-test-admin-token-0123456789abcdef"


@pytest.fixture
def service(database_url, redis_server, start_service) -> ServiceProcess:
    return start_service(settings_env(database_url, redis_server.url, PHOENIX_ADMIN_TOKEN=ADMIN_TOKEN))


# --------------------------------------------------------------------------- ports
def test_admin_api_and_metrics_answer_only_on_the_admin_port(service, make_user):
    user = make_user()
    revoke = f"/api/auth/admin/users/{user.id}/revoke-sessions"
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=service.base_url, timeout=10) as public:
        token = public.post(LOGIN, json={"email": user.email, "password": user.password}).json()
        token = token["session"]["sessionId"]
        # The public port: no admin API (even with the right token), no metrics.
        for method, path, headers in (("POST", revoke, admin), ("GET", "/metrics", {})):
            r = public.request(method, path, headers=headers)
            assert r.status_code == 404 and r.json()["error"] == "NOT_FOUND", (path, r.text)
        assert public.get(SESSION, headers={"Authorization": f"Bearer {token}"}).status_code == 200
        for path in ("/healthz", "/readyz", "/api/phoenix/health"):  # probes stay reachable here
            assert public.get(path).status_code == 200, path
    with httpx.Client(base_url=service.admin_url, timeout=10) as internal:
        r = internal.get("/metrics")
        assert r.status_code == 200 and "phoenix_login_attempts_total" in r.text
        for path in ("/healthz", "/readyz", "/api/phoenix/health"):
            assert internal.get(path).status_code == 200, path
        # ...and no user-facing routes on the admin port.
        assert internal.post(LOGIN, json={"email": user.email, "password": user.password}).status_code == 404
        assert internal.get(SESSION, headers={"Authorization": f"Bearer {token}"}).status_code == 404
        wrong = internal.post(revoke, headers={"Authorization": "Bearer " + ADMIN_TOKEN[:-1] + "x"})
        assert wrong.status_code == 401 and wrong.json()["error"] == "ADMIN_UNAUTHORIZED"
        r = internal.post(revoke, headers=admin)
        assert r.status_code == 200 and r.json() == {"userId": user.id, "revoked": 1}


@pytest.mark.parametrize("token", ["", "short-admin-token"])
def test_an_empty_or_short_admin_token_stops_the_service_from_starting(
    database_url, redis_server, start_service, token
):
    """PHOENIX_ADMIN_TOKEN="" used to start, and `Authorization: Bearer ` then matched it."""
    svc = start_service(settings_env(database_url, redis_server.url, PHOENIX_ADMIN_TOKEN=token), wait=False)
    assert svc.proc.wait(timeout=30) != 0
    output = svc.output()
    assert "PHOENIX_ADMIN_TOKEN" in output and "at least 32 bytes" in output
    if token:
        assert token not in output


def test_a_busy_admin_port_is_a_start_up_error_naming_the_variable(database_url, redis_server):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {
            **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
            **settings_env(database_url, redis_server.url),
            "PHOENIX_PORT": str(free_port()),
            "PHOENIX_ADMIN_PORT": str(port),
        }
        result = subprocess.run(
            [sys.executable, "-m", "phoenix_auth.cli", "serve"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode != 0
    assert f"127.0.0.1:{port} (PHOENIX_ADMIN_PORT)" in result.stderr, result.stderr[-2000:]


# --------------------------------------------------------------------------- cookie
async def test_the_session_cookie_is_host_prefixed_and_an_unprefixed_one_is_not_read(
    make_settings, make_user
):
    async with running_app(make_settings()) as (_, client):
        user = make_user()
        r = await client.post(LOGIN, json={"email": user.email, "password": user.password})
        token = r.json()["session"]["sessionId"]
        attributes = [a.strip() for a in r.headers["set-cookie"].split(";")]
        assert attributes[0] == f"__Host-phoenix_session={token}"
        assert {"HttpOnly", "Path=/", "SameSite=lax", "Secure"} <= set(attributes)
        assert not any(a.lower().startswith("domain") for a in attributes)
        client.cookies.clear()
        # A cookie without the prefix (which a sibling subdomain or a plain-HTTP page could set)
        # is not a session cookie.
        r = await client.get(SESSION, headers={"Cookie": f"phoenix_session={token}"})
        assert r.status_code == 401 and r.json()["error"] == "SESSION_REQUIRED"
        r = await client.get(SESSION, headers={"Cookie": f"__Host-phoenix_session={token}"})
        assert r.status_code == 200
    async with running_app(make_settings(cookie_secure=False, cookie_name="sid")) as (_, client):
        r = await client.post(LOGIN, json={"email": user.email, "password": user.password})
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("sid=") and "Secure" not in cookie  # plain HTTP: no prefix possible


# --------------------------------------------------------------------------- logout
@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"a=1", "application/x-www-form-urlencoded"),
        (b"", "application/x-www-form-urlencoded"),  # a form with no fields
        (b'{"x":1}', "text/plain"),  # the "JSON as text/plain" CSRF trick
        (b"--b\r\n\r\n--b--\r\n", "multipart/form-data; boundary=b"),
        (b"x", None),  # a body without a Content-Type (fetch with a typeless Blob)
    ],
)
async def test_a_cross_site_form_cannot_log_anyone_out(make_settings, make_user, content, content_type):
    async with running_app(make_settings()) as (_, client):
        user = make_user()
        await client.post(LOGIN, json={"email": user.email, "password": user.password})  # sets the cookie
        headers = {"content-type": content_type} if content_type else {}
        r = await client.post(LOGOUT, content=content, headers=headers)
        assert r.status_code == 415 and r.json()["error"] == "UNSUPPORTED_MEDIA_TYPE", r.text
        assert "set-cookie" not in r.headers
        assert (await client.get(SESSION)).status_code == 200  # still logged in


@pytest.mark.parametrize(
    ("content", "content_type"), [(b"", None), (b"{}", "application/json"), (b"", "application/json")]
)
async def test_logout_with_no_body_or_json_works(make_settings, make_user, content, content_type):
    async with running_app(make_settings()) as (_, client):
        user = make_user()
        await client.post(LOGIN, json={"email": user.email, "password": user.password})
        headers = {"content-type": content_type} if content_type else {}
        r = await client.post(LOGOUT, content=content, headers=headers)
        assert r.status_code == 200 and r.json() == {"revoked": True}
        assert r.headers["set-cookie"].startswith("__Host-phoenix_session=")
        assert (await client.get(SESSION, headers={"Cookie": ""})).status_code == 401


# --------------------------------------------------------------------------- bodies sent before reading
def _send_all_then_read(port: int, head: bytes, body_chunks: list[bytes]) -> tuple[bytes, str | None]:
    """Send the request head and every body chunk, pausing after the first so a server that
    answers early has answered (and, before the fix, closed) by then; then read the answer.
    Returns (what was read, the send error if any)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        error = None
        try:
            sock.sendall(head + body_chunks[0])
            time.sleep(0.3)
            for chunk in body_chunks[1:]:
                sock.sendall(chunk)
        except OSError as exc:
            error = type(exc).__name__
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
                if b"\r\n\r\n" in data:
                    head_part, _, rest = data.partition(b"\r\n\r\n")
                    length = [h for h in head_part.lower().split(b"\r\n") if h.startswith(b"content-length:")]
                    if length and len(rest) >= int(length[0].split(b":")[1]):
                        break
        except OSError as exc:
            error = error or type(exc).__name__
        return data, error


def _json_body(data: bytes) -> dict[str, str]:
    return json.loads(data.partition(b"\r\n\r\n")[2])


FIVE_MIB = 5 * 1024 * 1024


@pytest.mark.parametrize("framing", ["content-length", "chunked", "http/1.0"])
def test_a_client_that_sends_5_mib_before_reading_gets_the_400(service, framing):
    """`Connection: close` (or HTTP/1.0, where it is implied): the server closes after answering,
    and closing with unread data used to reset the connection under the client's feet."""
    body = b'{"email":"a@b.co","password":"' + b"p" * FIVE_MIB + b'"}'
    version = b"HTTP/1.0" if framing == "http/1.0" else b"HTTP/1.1"
    head = b"POST " + LOGIN.encode() + b" " + version + b"\r\nHost: x\r\nContent-Type: application/json\r\n"
    if framing == "chunked":
        head += b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        step = 256 * 1024
        chunks = [
            b"%x\r\n" % len(body[i : i + step]) + body[i : i + step] + b"\r\n"
            for i in range(0, len(body), step)
        ]
        chunks.append(b"0\r\n\r\n")
    else:
        head += b"Content-Length: %d\r\n" % len(body)
        head += b"Connection: close\r\n\r\n" if framing == "content-length" else b"\r\n"
        chunks = [body[i : i + 256 * 1024] for i in range(0, len(body), 256 * 1024)]
    data, error = _send_all_then_read(service.port, head, chunks)
    assert error is None, (error, data[:200])
    assert data.startswith(b"HTTP/1.1 400"), data[:300]
    assert _json_body(data)["error"] == "BODY_TOO_LARGE"


def test_a_keep_alive_connection_is_usable_after_an_oversized_body(service):
    body = b"x" * FIVE_MIB
    head = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (
        LOGIN.encode(),
        len(body),
    )
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(head + body)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while data.count(b"HTTP/1.1 ") < 2 or not data.endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    first, _, second = data.partition(b"HTTP/1.1 200")
    assert first.startswith(b"HTTP/1.1 400") and b"BODY_TOO_LARGE" in first
    assert b'{"status":"ok"}' in second


def test_a_form_posted_to_logout_before_reading_gets_the_415(service):
    body = b"a=" + b"1" * (2 * 1024 * 1024)
    head = (
        b"POST /api/auth/logout HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    data, error = _send_all_then_read(service.port, head, [body[:65536], body[65536:]])
    assert error is None and data.startswith(b"HTTP/1.1 415"), (error, data[:300])
    assert _json_body(data)["error"] == "UNSUPPORTED_MEDIA_TYPE"


def test_a_body_declared_past_the_drain_bound_is_answered_at_once_and_closed(service):
    """Draining is bounded (8 MiB, 2 s): a 64 MiB declaration is not read, the 400 says close."""
    head = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (
        LOGIN.encode(),
        64 * 1024 * 1024,
    )
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(head + b"x" * 1024)
        data = sock.recv(65536)
    assert time.monotonic() - start < 1.0
    assert data.startswith(b"HTTP/1.1 400") and b"connection: close" in data.lower()
