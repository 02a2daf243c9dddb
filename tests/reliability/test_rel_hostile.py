"""Hostile input against a real `phoenix-auth serve`: a corpus of bad requests, header injection,
slow clients, confusable emails, oversized passwords, brute force, credential stuffing, token
replay and forgery.

The promise under test: bad input gets a clear 4xx with JSON `{"error", "message"}` (or, for
bytes that are not HTTP at all, the HTTP parser's 400 and a closed connection), never a 5xx,
never a hang, and never a login that should not happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import statistics
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from reltestkit import PhoenixServer, RedisServer, base_env, make_users

from phoenix_auth.app import create_app
from phoenix_auth.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

LOGIN = "/api/auth/phoenix"
SESSION = "/api/auth/session"
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def module_db(private_pg) -> str:
    return private_pg.create_database()


@pytest.fixture(scope="module")
def module_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def server(module_db, module_redis) -> Iterator[PhoenixServer]:
    """One service for the input corpus; the per-IP throttle is out of the way (all our requests
    come from 127.0.0.1 and many of them are meant to fail)."""
    svc = PhoenixServer(
        base_env(
            module_db,
            module_redis.url,
            PHOENIX_THROTTLE_IP_FREE_FAILURES="100000",
            PHOENIX_THROTTLE_FREE_FAILURES="40",
            PHOENIX_THROTTLE_LOCKOUT_FAILURES="90",
            PHOENIX_BODY_READ_TIMEOUT="1.5",
            PHOENIX_ADMIN_TOKEN="admin-" + secrets.token_hex(16),
        )
    )
    try:
        svc.wait_ready()
        yield svc
    finally:
        svc.cleanup()


@pytest.fixture
def client(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=10) as c:
        yield c


def assert_error(r: httpx.Response, status: int, codes: set[str] | str) -> None:
    codes = {codes} if isinstance(codes, str) else codes
    assert r.status_code == status, (r.status_code, r.text[:300])
    body = r.json()
    assert set(body) == {"error", "message"}, body
    assert body["error"] in codes, body
    assert isinstance(body["message"], str) and body["message"], body


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b"x" * size
        sent += size


NESTED_ARRAYS = b"[" * 5000 + b"]" * 5000
NESTED_OBJECTS = b'{"a":' * 2500 + b"1" + b"}" * 2500
# (id, raw body, content type, expected status, expected error codes)
BAD_BODIES = [
    ("empty", b"", "application/json", 400, "INVALID_JSON"),
    ("not-json", b"email=a@b.co&password=x", "application/json", 400, "INVALID_JSON"),
    ("truncated", b'{"email": "a@b.co", "password": ', "application/json", 400, "INVALID_JSON"),
    (
        "invalid-utf8",
        b'{"email":"a@b.co","password":"\xff\xfe\xc3\x28"}',
        "application/json",
        400,
        "INVALID_JSON",
    ),
    ("utf16", '{"email":"a@b.co","password":"p"}'.encode("utf-16"), "application/json", 400, "INVALID_JSON"),
    ("raw-nul", b'{"email":"a@b.co","password":"a\x00b"}', "application/json", 400, "INVALID_JSON"),
    ("nested-arrays", NESTED_ARRAYS, "application/json", 400, {"INVALID_JSON", "INVALID_BODY"}),
    ("nested-objects", NESTED_OBJECTS, "application/json", 400, {"INVALID_JSON", "MISSING_FIELD"}),
    ("array", b'[{"email":"a@b.co","password":"p"}]', "application/json", 400, "INVALID_BODY"),
    ("string", b'"a@b.co"', "application/json", 400, "INVALID_BODY"),
    ("null", b"null", "application/json", 400, "INVALID_BODY"),
    ("number", b"1e999999", "application/json", 400, "INVALID_BODY"),
    ("no-password", b'{"email":"a@b.co"}', "application/json", 400, "MISSING_FIELD"),
    ("null-password", b'{"email":"a@b.co","password":null}', "application/json", 400, "MISSING_FIELD"),
    ("empty-email", b'{"email":"  ","password":"p"}', "application/json", 400, "MISSING_FIELD"),
    ("email-list", b'{"email":["a@b.co"],"password":"p"}', "application/json", 400, "INVALID_FIELD_TYPE"),
    ("email-object", b'{"email":{"$ne":null},"password":"p"}', "application/json", 400, "INVALID_FIELD_TYPE"),
    (
        "password-number",
        b'{"email":"a@b.co","password":12345}',
        "application/json",
        400,
        "INVALID_FIELD_TYPE",
    ),
    ("password-bool", b'{"email":"a@b.co","password":true}', "application/json", 400, "INVALID_FIELD_TYPE"),
    (
        "lone-surrogate-pw",
        b'{"email":"a@b.co","password":"\\ud800"}',
        "application/json",
        400,
        "INVALID_FIELD_TYPE",
    ),
    (
        "lone-surrogate-email",
        b'{"email":"a\\udfff@b.co","password":"p"}',
        "application/json",
        400,
        "INVALID_EMAIL",
    ),
    ("nul-in-email", b'{"email":"a\\u0000@b.co","password":"p"}', "application/json", 400, "INVALID_EMAIL"),
    (
        "crlf-in-email",
        b'{"email":"a@b.co\\r\\nBcc: x@y.z","password":"p"}',
        "application/json",
        400,
        "INVALID_EMAIL",
    ),
    ("no-at", b'{"email":"ab.co","password":"p"}', "application/json", 400, "INVALID_EMAIL"),
    ("two-ats", b'{"email":"a@b@c.co","password":"p"}', "application/json", 400, "INVALID_EMAIL"),
    ("at-only", b'{"email":"@","password":"p"}', "application/json", 400, "INVALID_EMAIL"),
    (
        "email-300",
        b'{"email":"' + b"a" * 290 + b'@b.co","password":"p"}',
        "application/json",
        400,
        "INVALID_EMAIL",
    ),
    (
        "password-2k",
        b'{"email":"a@b.co","password":"' + b"p" * 2048 + b'"}',
        "application/json",
        400,
        "PASSWORD_TOO_LONG",
    ),
    ("text-plain", b'{"email":"a@b.co","password":"p"}', "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
    (
        "form",
        b"email=a%40b.co&password=p",
        "application/x-www-form-urlencoded",
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    ),
    ("multipart", b"--x\r\n\r\n--x--", "multipart/form-data; boundary=x", 415, "UNSUPPORTED_MEDIA_TYPE"),
    ("xml", b"<login/>", "application/xml", 415, "UNSUPPORTED_MEDIA_TYPE"),
    ("no-content-type", b'{"email":"a@b.co","password":"p"}', None, 415, "UNSUPPORTED_MEDIA_TYPE"),
]

SQL_INJECTION = [
    "' OR '1'='1'--@x.io",
    "admin'--@x.io",
    "x@x.io'; DROP TABLE users; --",
    "x@x.io' UNION SELECT id, email, name, role, hashed_password, team_name, disabled, now() FROM users--",
    "x@x.io\\'; SELECT pg_sleep(5); --",
    "%' OR 1=1 --@x.io",
    "x@x.io' AND (SELECT count(*) FROM pg_stat_activity) > 0 --",
]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "codes"), [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES]
)
def test_bad_bodies_get_a_typed_4xx(client, body, content_type, status, codes):
    headers = {"content-type": content_type} if content_type else {}
    start = time.monotonic()
    r = client.post(LOGIN, content=body, headers=headers)
    assert_error(r, status, codes)
    assert time.monotonic() - start < 2.0


def test_huge_bodies_are_refused_without_reading_them(client):
    # Declared size over the limit: refused from the header.
    r = client.post(LOGIN, content=b"x" * (2 * 1024 * 1024), headers=JSON)
    assert_error(r, 400, "BODY_TOO_LARGE")
    # Chunked, no declared size: reading stops at the limit.
    r = client.post(LOGIN, content=_chunks(4 * 1024 * 1024), headers=JSON)
    assert_error(r, 400, "BODY_TOO_LARGE")
    # A 1 MB password: rejected before any hashing, quickly.
    body = b'{"email":"a@b.co","password":"' + b"p" * (1024 * 1024) + b'"}'
    start = time.monotonic()
    r = client.post(LOGIN, content=body, headers=JSON)
    assert_error(r, 400, {"BODY_TOO_LARGE", "PASSWORD_TOO_LONG"})
    assert time.monotonic() - start < 1.0
    assert client.get("/healthz").status_code == 200


def test_sql_injection_strings_are_just_wrong_credentials(client, module_db):
    with psycopg.connect(module_db) as conn:
        (before,) = conn.execute("SELECT count(*) FROM users").fetchone()
    make_users(module_db, 1)
    for email in SQL_INJECTION:
        for password in ("' OR '1'='1", "x'); DROP TABLE phoenix_sessions; --"):
            start = time.monotonic()
            r = client.post(LOGIN, json={"email": email, "password": password})
            assert r.status_code in (400, 401), r.text
            assert_error(r, r.status_code, {"INVALID_CREDENTIALS", "INVALID_EMAIL"})
            assert time.monotonic() - start < 2.0  # no pg_sleep ran
    r = client.get(SESSION, headers={"Authorization": "Bearer ' OR 1=1 --"})
    assert_error(r, 401, "INVALID_SESSION")
    with psycopg.connect(module_db) as conn:
        (after,) = conn.execute("SELECT count(*) FROM users").fetchone()
        (sessions,) = conn.execute("SELECT count(*) FROM phoenix_sessions").fetchone()
    assert after == before + 1
    assert sessions == 0  # nobody got in


def test_confusable_emails_do_not_log_into_the_latin_account(client, module_db):
    (uid, email, password) = make_users(module_db, 1, prefix="alice")[0]
    local, _, domain = email.partition("@")
    lookalikes = [
        email.replace("a", "\u0430", 1),  # U+0430 Cyrillic small a
        email.replace("e", "\u0435", 1),  # U+0435 Cyrillic small ie
        email.replace("c", "\u0441", 1),  # U+0441 Cyrillic small es
        local + "\uff20" + domain,  # fullwidth @
        local.replace("l", "\u0406", 1) + "@" + domain,  # U+0406 Cyrillic capital I for l
        "\u200b" + email,  # zero-width space prefix
        email + "\u200d",  # zero-width joiner suffix
        email.replace("@", "\u202e@", 1),  # right-to-left override
        local + "@" + domain.replace("example", "examp1e"),
    ]
    for candidate in lookalikes:
        assert candidate != email
        r = client.post(LOGIN, json={"email": candidate, "password": password})
        assert r.status_code in (400, 401), (candidate, r.text)
        assert r.json()["error"] in {"INVALID_CREDENTIALS", "INVALID_EMAIL"}
    # The real address (any ASCII case) still works: confusables were refused, not the account.
    r = client.post(LOGIN, json={"email": email.upper(), "password": password})
    assert r.status_code == 200, r.text
    assert r.json()["user"]["id"] == uid


def test_header_injection_is_refused_by_the_http_parser(server, client):
    # (raw request, must the HTTP parser refuse it?)
    attacks = [
        (
            b"GET /api/auth/session HTTP/1.1\r\nHost: x\r\n"
            b"Cookie: __Host-phoenix_session=a\rSet-Cookie: evil=1\r\n\r\n",
            True,
        ),
        (b"GET /api/auth/session HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\nX-Evil: 1\r\n\r\n", False),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4\x00\r\n\r\n", True),
        (b"POST /api/auth/phoenix HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", True),
        (
            b"POST /api/auth/phoenix HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            True,
        ),
        # Not refused, but harmless: the extra line is a request header, never echoed back.
        (b"GET /healthz\r\nSet-Cookie: evil=1 HTTP/1.1\r\nHost: x\r\n\r\n", False),
    ]
    for raw, refused in attacks:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(raw)
            data = b""
            with contextlib.suppress(TimeoutError, ConnectionResetError):
                while chunk := sock.recv(4096):
                    data += chunk
        status_line, _, rest = data.partition(b"\r\n")
        assert status_line.startswith(b"HTTP/1.1 "), (raw, data[:200])
        if refused:
            assert status_line.startswith(b"HTTP/1.1 400"), (raw, data[:200])
        else:
            assert int(status_line.split()[1]) < 500, (raw, data[:200])
        headers = rest.partition(b"\r\n\r\n")[0].lower()
        assert b"evil" not in headers and b"set-cookie" not in headers, data
    # Values the parser accepts are data, not headers: a weird cookie is just an invalid session.
    r = client.get(SESSION, headers={"Cookie": "__Host-phoenix_session=%0d%0aSet-Cookie:%20evil=1"})
    assert_error(r, 401, "INVALID_SESSION")
    assert "evil" not in str(r.headers).lower()
    assert client.get("/healthz").status_code == 200


def _open_trickle(port: int, declared: int = 60) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        b"POST /api/auth/phoenix HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {declared}\r\n\r\n".encode()
        + b'{"email":'
    )
    return sock


async def test_slow_body_times_out_with_408_and_close_without_blocking_others(server):
    """Headers, then a body trickled one byte per 0.3 s: 408 after PHOENIX_BODY_READ_TIMEOUT (1.5 s)."""
    loop = asyncio.get_running_loop()

    def trickle() -> tuple[float, bytes]:
        sock = _open_trickle(server.port)
        start = time.monotonic()
        data = b""
        sock.settimeout(0.3)
        try:
            while time.monotonic() - start < 15:
                with contextlib.suppress(OSError):
                    sock.sendall(b" ")
                try:
                    chunk = sock.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not chunk:
                    break  # the server closed the connection
                data += chunk
            return time.monotonic() - start, data
        finally:
            sock.close()

    trickler = loop.run_in_executor(None, trickle)
    users = make_users(server.env["DATABASE_URL"], 1)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as c:
        await asyncio.sleep(0.2)
        latencies = []
        for _ in range(10):  # meanwhile, everyone else is served normally
            start = time.monotonic()
            r = await c.post(LOGIN, json={"email": users[0][1], "password": users[0][2]})
            assert r.status_code == 200
            latencies.append(time.monotonic() - start)
    elapsed, data = await trickler
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    assert b'"error":"REQUEST_TIMEOUT"' in data and b"connection: close" in data.lower()
    assert 1.4 <= elapsed < 5.0, elapsed  # answered after the timeout and the connection closed
    assert max(latencies) < 1.0, latencies


async def test_many_stalled_connections_do_not_block_other_clients(server):
    """100 clients that open a connection and stall (half-sent headers or half-sent bodies)."""
    socks = []
    try:
        for i in range(100):
            if i % 2:
                s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
                s.sendall(b"GET /api/auth/session HTTP/1.1\r\nHost: x\r\nAuthorization: Bea")
            else:
                s = _open_trickle(server.port)
            socks.append(s)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as c:
            start = time.monotonic()
            results = await asyncio.gather(*(c.get("/readyz") for _ in range(20)))
            assert all(r.status_code == 200 for r in results)
            assert time.monotonic() - start < 3.0
        # Every half-sent login body is answered: 408 after the body timeout, or, beyond what the
        # hashing budget admits at once, 503 OVERLOADED before its body is read.
        await asyncio.sleep(2.0)
        answered = {b"408": 0, b"503": 0}
        for s in socks[::2]:
            s.settimeout(2)
            with contextlib.suppress(OSError):
                status = s.recv(4096)[9:12]
                if status in answered:
                    answered[status] += 1
        assert sum(answered.values()) == 50, answered
        assert answered[b"408"] >= 1, answered  # the body timeout still ends the admitted ones
    finally:
        for s in socks:
            s.close()


def test_admin_route_with_hostile_user_ids(server, client):
    admin = server.env["PHOENIX_ADMIN_TOKEN"]
    headers = {"Authorization": f"Bearer {admin}"}
    for user_id in (
        "%00",
        "a%00b",
        "%FF%FE",
        "x" * 4000,
        "'%20OR%201=1--",
        "..%2F..%2Fetc%2Fpasswd",
        "%E2%80%AE",
    ):
        r = client.post(f"{server.admin_url}/api/auth/admin/users/{user_id}/revoke-sessions", headers=headers)
        assert_error(r, 404, {"USER_NOT_FOUND", "NOT_FOUND"})
    r = client.post(
        f"{server.admin_url}/api/auth/admin/users/x/revoke-sessions",
        headers={"Authorization": "Bearer " + admin[:-1]},
    )
    assert_error(r, 401, "ADMIN_UNAUTHORIZED")
    r = client.post(
        f"{server.admin_url}/api/auth/admin/users/x/revoke-sessions",
        headers={"Authorization": ("Bearer " + "\u00e9" * 3).encode()},
    )
    assert r.status_code in (400, 401)


# --------------------------------------------------------------------------- passwords never hashed
async def test_oversized_passwords_are_rejected_before_any_hashing(private_pg, module_db, module_redis):
    """In-process, with the real (OWASP) argon2 parameters and a counting hasher: no hash call at all."""
    settings = Settings(
        DATABASE_URL=module_db, REDIS_URL=module_redis.url, summary_interval=0, hash_threads=1
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        hasher = app.resources.hasher
        calls = {"n": 0}
        for name in ("_check", "hash"):  # every verify (and dummy verify) runs _check
            original = getattr(hasher, name)

            def counted(*args, _original=original, **kwargs):
                calls["n"] += 1
                return _original(*args, **kwargs)

            setattr(hasher, name, counted)
        transport = httpx.ASGITransport(app=app, client=("10.9.8.7", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            # Control: a normal failed login does hash (so the counter works).
            await c.post(LOGIN, json={"email": "nobody@x.io", "password": "p"})
            assert calls["n"] == 1
            timings = []
            for size in (1025, 4096, 16000, 1024 * 1024):
                body = b'{"email":"nobody@x.io","password":"' + b"p" * size + b'"}'
                for _ in range(5):
                    start = time.perf_counter()
                    r = await c.post(LOGIN, content=body, headers=JSON)
                    timings.append(time.perf_counter() - start)
                    assert_error(r, 400, {"PASSWORD_TOO_LONG", "BODY_TOO_LARGE"})
            assert calls["n"] == 1, "an oversized password reached the hasher"
            assert statistics.median(timings) < 0.05, timings
            assert max(timings) < 0.5


# --------------------------------------------------------------------------- throttling and tokens
@pytest.fixture
def throttled_server(start_server, pg_database, private_redis):
    def start(**extra: str) -> PhoenixServer:
        return start_server(base_env(pg_database, private_redis.url, **extra))

    return start


def test_brute_force_on_one_account_is_throttled_even_for_the_right_password(throttled_server, pg_database):
    svc = throttled_server(PHOENIX_THROTTLE_FREE_FAILURES="3", PHOENIX_THROTTLE_BASE_DELAY="3")
    _, email, password = make_users(pg_database, 1)[0]
    statuses = []
    with httpx.Client(base_url=svc.base_url, timeout=10) as c:
        for i in range(12):
            r = c.post(LOGIN, json={"email": email, "password": f"guess-{i}"})
            statuses.append(r.status_code)
        assert statuses[:4] == [401] * 4  # 3 free failures, the 4th locks
        assert set(statuses[4:]) == {429}
        assert_error(r, 429, "THROTTLED")
        assert 1 <= int(r.headers["retry-after"]) <= 3
        r = c.post(LOGIN, json={"email": email, "password": password})
        assert_error(r, 429, "THROTTLED")  # the right password is refused while locked
        time.sleep(int(r.headers["retry-after"]) + 0.2)
        r = c.post(LOGIN, json={"email": email, "password": password})
        assert r.status_code == 200
        assert r.json()["session"]["securityRisk"] > 0


def test_credential_stuffing_from_one_ip_is_throttled_and_xff_is_ignored(throttled_server, pg_database):
    svc = throttled_server(PHOENIX_THROTTLE_IP_FREE_FAILURES="5", PHOENIX_THROTTLE_BASE_DELAY="5")
    victims = make_users(pg_database, 12)
    with httpx.Client(base_url=svc.base_url, timeout=10) as c:
        statuses = []
        for i, (_, email, _) in enumerate(victims[:10]):
            # A different account each time, and a forged X-Forwarded-For each time.
            r = c.post(
                LOGIN,
                json={"email": email, "password": "Winter2024!"},
                headers={"X-Forwarded-For": f"203.0.113.{i}"},
            )
            statuses.append(r.status_code)
        assert statuses[:6] == [401] * 6
        assert set(statuses[6:]) == {429}
        # The address is blocked for every account that has not logged in from it, even with
        # valid credentials (test_rel_throttle.py: accounts that have are never refused).
        _, email, password = victims[11]
        r = c.post(
            LOGIN, json={"email": email, "password": password}, headers={"X-Forwarded-For": "192.0.2.1"}
        )
        assert_error(r, 429, "THROTTLED")
        assert int(r.headers["retry-after"]) >= 1


def test_tokens_replayed_after_logout_or_expiry_and_forged_tokens_are_rejected(throttled_server, pg_database):
    svc = throttled_server()
    (uid, email, password), (_, email2, password2) = make_users(pg_database, 2)
    with httpx.Client(base_url=svc.base_url, timeout=10) as c:
        token = c.post(LOGIN, json={"email": email, "password": password}).json()["session"]["sessionId"]
        token2 = c.post(LOGIN, json={"email": email2, "password": password2}).json()["session"]["sessionId"]
        c.cookies.clear()
        bearer = {"Authorization": f"Bearer {token}"}
        assert c.get(SESSION, headers=bearer).status_code == 200
        assert c.post("/api/auth/logout", headers=bearer).json() == {"revoked": True}
        for _ in range(3):  # replay after logout: bearer and cookie
            assert_error(c.get(SESSION, headers=bearer), 401, "INVALID_SESSION")
            cookie = {"Cookie": f"__Host-phoenix_session={token}"}
            assert_error(c.get(SESSION, headers=cookie), 401, "INVALID_SESSION")
        assert c.post("/api/auth/logout", headers=bearer).json() == {"revoked": False}
        # Expiry: the row's expires_at passes (written by another app); the cached copy obeys it too.
        assert c.get(SESSION, headers={"Authorization": f"Bearer {token2}"}).status_code == 200
        with psycopg.connect(pg_database, autocommit=True) as conn:
            conn.execute(
                "UPDATE phoenix_sessions SET expires_at = now() - interval '1 second' WHERE user_id <> %s",
                (uid,),
            )
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            r = c.get(SESSION, headers={"Authorization": f"Bearer {token2}"})
            if r.status_code == 401:
                break
            time.sleep(0.05)
        assert_error(r, 401, "INVALID_SESSION")
        # Forged tokens: well-formed random ones, a token with one character changed, garbage.
        flipped = token2[:-1] + ("A" if token2[-1] != "A" else "B")
        for forged in (
            secrets.token_urlsafe(32),
            flipped,
            "A" * 43,
            "x" * 10000,
            "é" * 43,
            "null",
            "../../x",
        ):
            r = c.get(SESSION, headers={"Authorization": f"Bearer {forged}".encode()})
            assert_error(r, 401, "INVALID_SESSION")
        assert_error(c.get(SESSION), 401, "SESSION_REQUIRED")
        assert_error(c.get(SESSION, headers={"Authorization": "Basic Zm9vOmJhcg=="}), 401, "SESSION_REQUIRED")
