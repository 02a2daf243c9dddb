"""The session hot path's hand-made pieces against the library code they replace: the response
body against JSONResponse and its model (api_models.SessionResponse, the documented shape),
header parsing against Starlette's Request, deferred metrics against prometheus-client's own
updates."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse

from phoenix_auth.api_models import SessionResponse
from phoenix_auth.app import session_json
from phoenix_auth.exchange import bearer_token, session_token
from phoenix_auth.metrics import LATENCY_BUCKETS, Metrics
from phoenix_auth.records import SessionRecord, UserRecord
from phoenix_auth.sessions import ValidSession

NAMES = [
    None,
    "",
    "Ada",
    'quote " backslash \\ slash /',
    "control \x00 \x1f \n \t \x7f",
    "unicode Zoë 東京 \u2028 \u2029 \U0001f600",
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("team", [None, "Platform & <Ops>"])
def test_session_body_is_byte_identical_to_json_response(name, team):
    user = UserRecord(
        id="3f0c1a9e-5c7d-4e5e-9a59-1f6f2d8f7a10",
        email="zoë@example.com",
        name=name,
        role="editor",
        hashed_password="$argon2id$secret",
        team_name=team,
        disabled=False,
        password_changed_at=1.0,
    )
    valid = ValidSession(
        user=user, session=SessionRecord("u", 1_790_000_000.123456, False, 2.0), cache_hits=2
    )
    expected = JSONResponse(
        {
            "user": user.public(),
            "session": {"expiresAt": int(valid.session.expires_at * 1000)},
            "performance": {"cacheHits": valid.cache_hits},
        }
    ).body
    body = session_json(valid)
    assert body == expected
    assert body == SessionResponse.of(valid).model_dump_json(by_alias=True).encode()
    assert SessionResponse.model_validate_json(body) == SessionResponse.of(valid)
    assert b"argon2" not in body


TOKEN = "A" * 43
HEADER_CASES = [
    [],
    [(b"authorization", b"Bearer " + TOKEN.encode())],
    [(b"authorization", b"bearer    " + TOKEN.encode() + b"   ")],
    [(b"authorization", b"Bearer ")],
    [(b"authorization", b"Bearer")],
    [(b"authorization", b"")],
    [(b"authorization", b"Basic dXNlcjpwYXNz"), (b"cookie", b"phoenix_session=" + TOKEN.encode())],
    [(b"cookie", b"a=1; phoenix_session=" + TOKEN.encode() + b"; b=2")],
    [(b"cookie", b'phoenix_session="quoted\\054value"')],
    [(b"cookie", b"phoenix_session=")],
    [(b"cookie", b"other=x"), (b"cookie", b"phoenix_session=in-the-second-header")],
    [(b"cookie", b"phoenix_session=first"), (b"cookie", b"phoenix_session=second; x=1")],
    [(b"cookie", b"phoenix_session=first"), (b"cookie", b"phoenix_session=")],
    [(b"authorization", b"Bearer first"), (b"authorization", b"Bearer second")],
    [(b"authorization", b"Bearer caf\xe9"), (b"x-other", b"1")],
]


def _starlette_bearer(request: Request) -> str | None:
    """What the service read with Starlette's Request before both paths shared exchange.py."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None


@pytest.mark.parametrize("headers", HEADER_CASES)
def test_raw_header_token_matches_starlette_request(headers):
    """The one token parser (fast path and Starlette routes) reads what Starlette's Request reads."""
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": headers})
    expected = _starlette_bearer(request) or request.cookies.get("phoenix_session") or None
    assert session_token(headers, "phoenix_session") == expected
    assert bearer_token(headers) == _starlette_bearer(request)


def test_deferred_metrics_render_what_direct_updates_render():
    """The same events through Metrics (deferred, flushed at render) and straight into
    prometheus-client instruments give the same exposition."""
    metrics = Metrics()
    direct = CollectorRegistry(auto_describe=True)
    http = Histogram(
        "phoenix_http_request_duration_seconds",
        "x",
        ("route", "method", "status"),
        buckets=LATENCY_BUCKETS,
        registry=direct,
    )
    sessions = Counter("phoenix_sessions_validated_total", "x", ("outcome",), registry=direct)
    cache = Counter("phoenix_cache_requests_total", "x", ("layer", "result"), registry=direct)
    lookups = Counter("phoenix_cache_lookups_total", "x", ("result",), registry=direct)
    # bucket bounds themselves, values between, below the first and above the last bound
    samples = [0.0, 0.0001, 0.0005, 0.0007, 0.001, 0.003, 0.5, 2.5, 5.0, 7.0, 0.0005]
    for i, seconds in enumerate(samples):
        status = 200 if i % 3 else 401
        metrics.request("/api/auth/session", "GET", status, seconds)
        http.labels("/api/auth/session", "GET", str(status)).observe(seconds)
        outcome = "valid" if status == 200 else "invalid"
        metrics.session(outcome)
        sessions.labels(outcome).inc()
        metrics.l1_hit()
        cache.labels("l1", "hit").inc()
        lookups.labels("hit").inc()
        metrics.cache("l2", "miss")
        cache.labels("l2", "miss").inc()
        metrics.lookup(False)
        lookups.labels("miss").inc()
        if i == 4:
            metrics.flush()  # a flush in the middle must not count anything twice

    def samples_of(text: str, prefix: str) -> list[str]:
        lines = [line for line in text.splitlines() if line.startswith(prefix) and "_created" not in line]
        return sorted(line for line in lines if not line.endswith(" 0.0"))

    ours = metrics.render()[0].decode()
    theirs = generate_latest(direct).decode()
    for prefix in (
        "phoenix_http_request_duration_seconds",
        "phoenix_sessions_validated_total",
        "phoenix_cache_requests_total",
        "phoenix_cache_lookups_total",
    ):
        assert samples_of(ours, prefix) == samples_of(theirs, prefix), prefix
        assert samples_of(ours, prefix)
    # health JSON numbers are immediate (plain counters)
    assert metrics.stats.cache["l1_hit"] == len(samples) and metrics.stats.requests == len(samples)
