"""The Starlette application: routes, request parsing, error rendering and the resource lifespan.

`create_app(settings)` builds an app whose lifespan opens the PostgreSQL pool, the Redis client,
the invalidation listener and the password hasher, holds them in one typed `Resources`
(`app.resources`, resources.py), and closes them on
shutdown. Nothing connects at import time. `app_from_env()` is the factory uvicorn workers import.

Two listeners, one app: server.py binds PHOENIX_PORT (public) and PHOENIX_ADMIN_PORT (admin) and
hands both sockets to the same workers; `PhoenixApp` sends a request to the admin routes when it
arrived on the admin port (the connection's local port, `scope["server"]`), else to the public
routes. The admin API and /metrics exist on the admin port only (the public port answers 404
for them), so they can stay off the Service users reach; the probes and the seed's health JSON
are served on both.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import api_models, openapi
from .addresses import client_address, is_private_untrusted_peer
from .cache import AuthCache
from .db import Database
from .drain import Drain, closing
from .errors import (
    AdminDisabled,
    AdminUnauthorized,
    BodyTooLarge,
    DatabaseUnavailable,
    InternalError,
    InvalidBody,
    InvalidJSON,
    MethodNotAllowed,
    NotFound,
    Overloaded,
    PhoenixError,
    PoolExhausted,
    RequestTimeout,
    SessionRequired,
    Throttled,
    UnsupportedMediaType,
    UserNotFound,
    error_response,
)
from .exchange import answer_error, bearer_token, request_done, session_token, unexpected
from .invalidation import InvalidationListener
from .login import Admission, LoginService, parse_credentials
from .logs import configure_logging
from .metrics import FLUSH_INTERVAL, Metrics
from .passwords import PasswordHasher, keep_kinds_current
from .redislink import RedisLink
from .resources import Resources
from .sessions import Sessions, ValidSession
from .settings import Settings
from .throttle import Throttle

log = logging.getLogger("phoenix_auth.app")

# An unread request body is drained (read and discarded) before the response, up to this much
# and this long, so a client that writes its whole body before reading gets our answer instead
# of a TCP reset; past either bound the response says `Connection: close`.
DRAIN_MAX_BYTES = 8 * 1024 * 1024
DRAIN_SECONDS = 2.0
LISTENER_START_WAIT = 3.0  # seconds start-up waits for the LISTEN connection before serving
HASH_CENSUS_START_WAIT = 30.0  # seconds start-up waits for the users table's hash-kind census
NO_STORE = {"Cache-Control": "no-store"}
SESSION_PATH = "/api/auth/session"


# --------------------------------------------------------------------------- request helpers
def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_json(media: str) -> bool:
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def declares_body(headers: list[tuple[bytes, bytes]]) -> bool:
    """The request announces a body: a non-zero Content-Length, or any Transfer-Encoding."""
    for key, value in headers:
        if key == b"content-length":
            if value.strip() not in (b"0", b""):
                return True
        elif key == b"transfer-encoding":
            return True
    return False


async def read_json_object(request: Request, max_bytes: int, read_timeout: float = 10.0) -> dict[str, Any]:
    """The body as a JSON object, or a typed 4xx: wrong type, too large, not UTF-8 JSON, not an object,
    or not received within `read_timeout` seconds (408: a trickling client cannot hold a request forever)."""
    if not is_json(media_type(request)):
        raise UnsupportedMediaType()
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > max_bytes:
                raise BodyTooLarge(f"The request body must be at most {max_bytes} bytes.")
        except ValueError:
            raise InvalidJSON("Invalid Content-Length header.") from None
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(read_timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise BodyTooLarge(f"The request body must be at most {max_bytes} bytes.")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout() from None
    raw = b"".join(chunks)
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidJSON() from None
    if not isinstance(body, dict):
        raise InvalidBody()
    return body


def peer_ip(request: Request, settings: Settings) -> str:
    """The client address for throttling and the session row (X-Forwarded-For from trusted
    proxies only, every header line read; see addresses.py)."""
    peer = request.client.host if request.client else None
    return client_address(peer, request.headers.getlist("x-forwarded-for"), settings.trusted_proxy_networks)


def _wire(body: api_models.Model) -> dict[str, Any]:
    """A response model as the JSON object sent (wire names; optional fields not set are left
    out, api_models.py); its schema is the documented one."""
    return body.model_dump(mode="json", by_alias=True, exclude_unset=True)


# --------------------------------------------------------------------------- endpoints
async def login_endpoint(request: Request) -> Response:
    state = resources(request)
    try:
        # Before the body is read: a login shed here costs no read, lookup, throttle or hash (login.py).
        admission = state.login.admit()
    except Overloaded:
        state.metrics.login("unavailable")
        raise
    with admission:
        return await _admitted_login(request, admission)


async def _admitted_login(request: Request, admission: Admission) -> Response:
    state = resources(request)
    settings = state.settings
    metrics = state.metrics
    try:
        body = await read_json_object(request, settings.max_body_bytes, settings.body_read_timeout)
        creds = parse_credentials(body, settings)
    except PhoenixError:
        metrics.login("bad_request")
        raise
    if request.client and is_private_untrusted_peer(request.client.host, settings.trusted_proxy_networks):
        metrics.untrusted_private_peer_login()
    try:
        result = await state.login.login(
            creds, peer_ip(request, settings), request.headers.get("user-agent"), admission
        )
    except PhoenixError as exc:
        outcome = {
            "INVALID_CREDENTIALS": "invalid_credentials",
            Throttled.code: "throttled",
            DatabaseUnavailable.code: "unavailable",
            PoolExhausted.code: "unavailable",
            Overloaded.code: "unavailable",
        }.get(exc.code, "error")
        metrics.login(outcome)
        raise
    metrics.login("success")
    response = JSONResponse(result.body(), headers={**NO_STORE, "Server-Timing": result.server_timing()})
    response.set_cookie(
        settings.session_cookie_name,  # __Host-: Secure, Path=/ and no Domain, as set here
        result.token,
        max_age=settings.session_ttl,
        path="/",
        secure=settings.cookie_secure,
        httponly=True,
        samesite="lax",
    )
    return response


async def login_alias_endpoint(request: Request) -> Response:
    """`/api/auth/login`: the same use-case as the seed's route, labelled separately in metrics."""
    return await login_endpoint(request)


# The session check is the hot path: one shared core (`session_body`) serves both the Starlette
# route (HEAD, and any request the fast path does not take) and `PhoenixApp`'s direct ASGI path
# for GET /api/auth/session, with the same token parser and request accounting (exchange.py), so
# the two cannot drift apart.
_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def _json_value(value: object) -> str:
    """One JSON value as `JSONResponse` renders it (ensure_ascii=False): strings through the same
    C string encoder its encoder uses, without building an encoder per call."""
    if value is None:
        return "null"
    if type(value) is str:
        return encode_basestring(value)
    return _JSON(value)


def session_json(valid: ValidSession) -> bytes:
    """The session response body, byte for byte what `JSONResponse` renders for
    {"user": user.public(), "session": {"expiresAt": ...}, "performance": {"cacheHits": ...}}
    (a test holds the two equal), built directly: this is the hottest response we send."""
    u = valid.user
    user = (
        f'{{"id":{_json_value(u.id)},"email":{_json_value(u.email)},"name":{_json_value(u.name)},'
        f'"role":{_json_value(u.role)},"teamName":{_json_value(u.team_name)}}}'
    )
    expires_ms = int(valid.session.expires_at * 1000)
    hits = int(valid.cache_hits)
    text = f'{{"user":{user},"session":{{"expiresAt":{expires_ms}}},"performance":{{"cacheHits":{hits}}}}}'
    return text.encode()


async def session_body(state: Resources, token: str | None) -> bytes:
    """Validate `token` and count the outcome; the 200 body, or a typed error."""
    metrics: Metrics = state.metrics
    if token is None:
        metrics.session("missing")
        raise SessionRequired()
    try:
        valid = await state.sessions.validate(token)
    except (DatabaseUnavailable, PoolExhausted):
        metrics.session("unavailable")
        raise
    except PhoenixError:
        metrics.session("invalid")
        raise
    metrics.session("valid")
    return session_json(valid)


async def session_endpoint(request: Request) -> Response:
    state = resources(request)
    body = await session_body(
        state, session_token(request.scope["headers"], state.settings.session_cookie_name)
    )
    return Response(body, headers=NO_STORE, media_type="application/json")


async def logout_endpoint(request: Request) -> Response:
    """Revoke the session. Only requests with no body, or a JSON one, are accepted: a cross-site
    HTML form (urlencoded, multipart, text/plain) cannot log anyone out, since a browser sends
    a JSON Content-Type cross-origin only after a CORS preflight, which this service never grants."""
    state = resources(request)
    settings: Settings = state.settings
    media = media_type(request)
    if (media and not is_json(media)) or (not media and declares_body(request.scope["headers"])):
        raise UnsupportedMediaType("Logout takes no body, or a JSON one (Content-Type: application/json).")
    token = session_token(request.scope["headers"], settings.session_cookie_name)
    if token is None:
        raise SessionRequired()
    revoked = await state.sessions.revoke(token)
    response = JSONResponse(_wire(api_models.LogoutResponse(revoked=revoked)), headers=NO_STORE)
    response.delete_cookie(
        settings.session_cookie_name, path="/", secure=settings.cookie_secure, httponly=True, samesite="lax"
    )
    return response


async def revoke_user_sessions_endpoint(request: Request) -> Response:
    state = resources(request)
    settings: Settings = state.settings
    if settings.admin_token is None:
        raise AdminDisabled()
    offered = bearer_token(request.scope["headers"]) or ""
    expected = settings.admin_token.get_secret_value()
    if not hmac.compare_digest(offered.encode("utf-8", "surrogatepass"), expected.encode("utf-8")):
        raise AdminUnauthorized()
    user_id = request.path_params["user_id"]
    if len(user_id) > 256 or "\x00" in user_id:
        raise UserNotFound()
    revoked = await state.sessions.revoke_user(user_id)
    if revoked is None:
        raise UserNotFound()
    log.info("admin revoked user sessions", extra={"fields": {"user_id": user_id, "revoked": revoked}})
    body = api_models.RevokedSessions(userId=user_id, revoked=revoked)
    return JSONResponse(_wire(body), headers=NO_STORE)


async def health_endpoint(request: Request) -> Response:
    """The seed's health JSON, with honest values from this worker."""
    state = resources(request)
    db: Database = state.db
    redis: RedisLink = state.redis
    cache: AuthCache = state.cache
    metrics: Metrics = state.metrics
    listener: InvalidationListener = state.listener
    db_ok, redis_ok = await asyncio.gather(db.reachable(1.0), redis.ping() if redis.configured else _false())
    s = metrics.stats
    pool = db.pool_stats()
    listening = listener.connected.is_set()
    degraded = (redis.configured and not redis_ok) or not listening
    body = {
        "status": "unhealthy" if not db_ok else ("degraded" if degraded else "healthy"),
        "database": {
            "healthy": db_ok,
            "metrics": {
                "totalQueries": s.db_queries,
                "averageQueryTime": round(s.db_seconds / s.db_queries * 1000, 3) if s.db_queries else 0,
                "slowQueries": s.db_slow_queries,
                "errors": s.db_errors,
                "activeConnections": pool["in_use"],
                "idleConnections": pool["idle"],
                "waitingRequests": pool["waiting"],
                "poolSize": pool["size"],
                "maxConnections": pool["max"],
                "poolTimeouts": pool["timeouts"],
                "connectionErrors": pool["connection_errors"],
            },
        },
        "cache": {
            "metrics": {
                "l1Hits": s.cache["l1_hit"],
                "l1Misses": s.cache["l1_miss"],
                "l2Hits": s.cache["l2_hit"],
                "l2Misses": s.cache["l2_miss"],
                "l2Errors": s.cache["l2_error"],
                "l2Rejected": s.l2_rejected,
                "hitRatio": s.hit_ratio(),
            },
            "stats": {
                **cache.stats(),
                "redis": {"configured": redis.configured, "healthy": redis_ok},
                "listener": {
                    "connected": listening,
                    "reconnects": listener.reconnects,
                    "notifications": listener.received,
                },
                "degraded": degraded,
                "degradedOperations": s.degraded,
            },
        },
        "throttle": {
            "trustedProxies": len(state.settings.trusted_proxies),
            "untrustedPrivatePeerLogins": s.untrusted_private_peer_logins,
        },
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    return JSONResponse(
        _wire(api_models.Health.model_validate(body)), status_code=200 if db_ok else 503, headers=NO_STORE
    )


async def _false() -> bool:
    return False


async def healthz_endpoint(request: Request) -> Response:
    """Liveness: the process and its event loop answer. Dependencies are not checked here."""
    return JSONResponse(_wire(api_models.Liveness(status="ok")), headers=NO_STORE)


async def readyz_endpoint(request: Request) -> Response:
    """Readiness: PostgreSQL answers and the pod is not draining before shutdown (drain.py). Redis and
    the listener are reported but never make us unready (we serve from PostgreSQL without them)."""
    state = resources(request)
    db_ok = await state.db.reachable(1.0)
    draining = state.drain.active
    body = api_models.Readiness(
        ready=db_ok and not draining,
        draining=draining,
        database=db_ok,
        redis=state.redis.healthy if state.redis.configured else None,
        listener=state.listener.connected.is_set(),
    )
    return JSONResponse(_wire(body), status_code=200 if body.ready else 503, headers=NO_STORE)


async def metrics_endpoint(request: Request) -> Response:
    state = resources(request)
    if not state.settings.enable_monitoring:
        raise NotFound("Monitoring is disabled (PHOENIX_ENABLE_MONITORING=false).")
    metrics: Metrics = state.metrics
    p = state.db.pool_stats()
    metrics.set_pool(p["in_use"], p["idle"], p["waiting"])
    payload, content_type = metrics.render()
    return Response(payload, media_type=content_type)


async def openapi_endpoint(request: Request) -> Response:
    return JSONResponse(openapi_document(resources(request).settings, "public"))


async def admin_openapi_endpoint(request: Request) -> Response:
    return JSONResponse(openapi_document(resources(request).settings, "admin"))


# --------------------------------------------------------------------------- errors and metrics
async def _phoenix_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PhoenixError)
    return error_response(exc)


async def _http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        response = error_response(MethodNotAllowed())
        if exc.headers and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    if exc.status_code == 404:
        return error_response(NotFound())
    return error_response(InternalError())


class MetricsMiddleware:
    """Times every HTTP request by route template, and turns an unexpected exception into a 500 JSON
    error (the helpers of exchange.py, shared with the session fast path)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: dict[Callable[..., Any], str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            await unexpected(scope, receive, send_wrapper, started)
        finally:
            endpoint = scope.get("endpoint")
            route = "unmatched" if endpoint is None else self.routes.get(endpoint, "unmatched")
            request_done(self.metrics, scope, route, status, start)


class DrainUnreadBody:
    """Reads what is left of an unread request body before the response starts (bounded).

    uvicorn closes the connection after the response when the client asked for it
    (`Connection: close`, HTTP/1.0) or the response says so, and closing a socket with unread
    data makes the kernel send a TCP reset: a client that writes its whole body before reading
    (a 5 MiB upload answered 400 BODY_TOO_LARGE, a form posted to logout answered 415) got
    "connection reset" instead of our answer. So the rest of the body is read and discarded, up
    to DRAIN_MAX_BYTES within DRAIN_SECONDS; past either (or when the declared length is already
    past it) the response carries `Connection: close` and the client may see a reset. A response
    that closes anyway (408 for a trickling client) is sent without draining.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not declares_body(scope["headers"]):
            await self.app(scope, receive, send)
            return
        body_done = False

        async def receive_wrapper() -> Message:
            nonlocal body_done
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal body_done
            if message["type"] == "http.response.start" and not body_done:
                body_done = True
                headers = list(message.get("headers", []))
                closing = any(k.lower() == b"connection" and b"close" in v.lower() for k, v in headers)
                if not closing and not await self._drain(scope, receive):
                    message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive_wrapper, send_wrapper)

    @staticmethod
    async def _drain(scope: Scope, receive: Receive) -> bool:
        """True when the whole body was read within the bounds."""
        for key, value in scope["headers"]:
            if key == b"content-length" and value.strip().isdigit() and int(value) > DRAIN_MAX_BYTES:
                return False
        read = 0
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                while read <= DRAIN_MAX_BYTES:
                    message = await receive()
                    if message["type"] != "http.request" or not message.get("more_body", False):
                        return True
                    read += len(message.get("body", b""))
        except TimeoutError:
            pass
        return False


class PhoenixApp(Starlette):
    """The public app, plus the dispatch to the admin app by port and a direct path for the hot
    route, GET /api/auth/session.

    A request whose connection came in on PHOENIX_ADMIN_PORT goes to `admin_app` (its own routes,
    middlewares and error handlers, the same `resources`); every other one stays here. While the pod
    drains before shutdown (drain.py), every response on either port asks the client to close.

    Session checks are most of the service's traffic and each one is a few microseconds of our
    own work; Starlette's per-request machinery (three middlewares, routing through every route,
    a Request object, the response object) cost more than the check itself. For exactly
    `GET /api/auth/session` (no root path) on the public port this class answers directly: the
    same core (`session_body`) and token parser (`exchange.session_token`), the same headers in
    the same order, and the same helpers as `MetricsMiddleware` for error rendering,
    unexpected errors and request metrics (exchange.py). Everything else, HEAD included, goes through
    Starlette.
    """

    admin_app: ASGIApp
    admin_port: int
    session_cookie: str
    drain: Drain
    resources: Resources  # set by the lifespan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self.drain.active:
                send = closing(send)
            server = scope.get("server")
            if server is not None and server[1] == self.admin_port:
                await self.admin_app(scope, receive, send)
                return
            if scope["path"] == SESSION_PATH and scope["method"] == "GET" and not scope.get("root_path"):
                await self._session(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _session(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        state = self.resources
        status = 500
        started = False
        try:
            try:
                body = await session_body(state, session_token(scope["headers"], self.session_cookie))
            except PhoenixError as exc:
                started = True
                status = await answer_error(exc, scope, receive, send)
                return
            # The headers, in order, that `Response(body, headers=NO_STORE, media_type=...)` sends.
            headers = [
                (b"cache-control", b"no-store"),
                (b"content-length", str(len(body)).encode("latin-1")),
                (b"content-type", b"application/json"),
            ]
            status, started = 200, True
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        except Exception:
            status = await unexpected(scope, receive, send, started) or status
        finally:
            request_done(state.metrics, scope, SESSION_PATH, status, start)


class AdminApp(Starlette):
    """The admin listener's app: its own routes and middlewares, the public app's resources."""

    public: PhoenixApp

    @property
    def resources(self) -> Resources:
        return self.public.resources


def resources(request: Request) -> Resources:
    """The process's resources, from the app (public or admin) that serves `request`."""
    app = request.app
    if not isinstance(app, PhoenixApp | AdminApp):
        raise TypeError(f"{type(app).__name__} is not a phoenix-auth app")
    return app.resources


# --------------------------------------------------------------------------- lifespan
async def _periodic(interval: float, fn: Callable[[], Awaitable[None] | None]) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            result = fn()
            if asyncio.iscoroutine(result):
                await result
        except Exception:
            log.exception("periodic task failed")


def _summary_line(app: PhoenixApp) -> None:
    """The seed's periodic monitoring line: one compact JSON log record."""
    state = app.resources
    s = state.metrics.stats
    pool = state.db.pool_stats()
    log.info(
        "phoenix summary",
        extra={
            "fields": {
                "requests": s.requests,
                "avg_request_ms": round(s.request_seconds / s.requests * 1000, 3) if s.requests else 0,
                "server_errors": s.server_errors,
                "logins_ok": s.logins_ok,
                "logins_failed": s.logins_failed,
                "db_queries": s.db_queries,
                "avg_db_ms": round(s.db_seconds / s.db_queries * 1000, 3) if s.db_queries else 0,
                "slow_queries": s.db_slow_queries,
                "cache_hit_ratio": s.hit_ratio(),
                "pool_in_use": pool["in_use"],
                "pool_idle": pool["idle"],
                "pool_waiting": pool["waiting"],
                "degraded": s.degraded,
                "invalidations": s.invalidations,
            }
        },
    )


def _make_lifespan(
    settings: Settings, metrics: Metrics
) -> Callable[[PhoenixApp], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: PhoenixApp) -> AsyncIterator[None]:
        db = Database(settings, metrics)
        await db.open()
        redis = RedisLink(settings, metrics)
        cache = AuthCache(settings, redis, metrics)
        hasher = PasswordHasher(settings)
        throttle = Throttle(settings, redis)
        sessions = Sessions(settings, db, cache, metrics)
        listener = InvalidationListener(settings, cache, metrics)
        app.resources = Resources(
            settings=settings,
            metrics=metrics,
            drain=app.drain,
            db=db,
            redis=redis,
            cache=cache,
            hasher=hasher,
            throttle=throttle,
            sessions=sessions,
            listener=listener,
            login=LoginService(settings, db, cache, hasher, throttle, sessions, metrics),
        )
        listener.start()
        tasks = [
            asyncio.create_task(
                _periodic(
                    1.0,
                    lambda: metrics.set_pool(*(db.pool_stats()[k] for k in ("in_use", "idle", "waiting"))),
                )
            ),
            asyncio.create_task(_periodic(FLUSH_INTERVAL, metrics.flush)),
            asyncio.create_task(app.drain.watch()),
        ]
        if settings.enable_monitoring and settings.summary_interval > 0:
            tasks.append(
                asyncio.create_task(_periodic(settings.summary_interval, lambda: _summary_line(app)))
            )
        census_done = asyncio.Event()
        tasks.append(asyncio.create_task(keep_kinds_current(hasher, db.hash_kinds, census_done)))
        if cache.l2_off_reason is not None and settings.enable_query_cache and redis.configured:
            log.warning(
                "L2 user/session cache off: PHOENIX_CACHE_SIGNING_KEY is not set (Redis holds only "
                "throttle counters; set a key of at least 32 bytes to cache in Redis)"
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(listener.connected.wait(), LISTENER_START_WAIT)
        with contextlib.suppress(TimeoutError):  # whether logins may open their session early
            await asyncio.wait_for(sessions.ask_can_discard(), LISTENER_START_WAIT)
        with contextlib.suppress(TimeoutError):  # failures are held to the slowest hash kind from the start
            await asyncio.wait_for(census_done.wait(), HASH_CENSUS_START_WAIT)
        log.info(
            "phoenix-auth started",
            extra={
                "fields": {
                    "pool_max": settings.max_db_connections,
                    "redis": redis.configured,
                    "l2": cache.l2_enabled,
                    "port": settings.port,
                    "admin_port": settings.admin_port,
                    "admin_api": settings.admin_token is not None,
                    "listener": listener.connected.is_set(),
                }
            },
        )
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await listener.stop()
            await throttle.close()
            await cache.close()
            await redis.close()
            await db.close()
            await hasher.aclose()
            metrics.close()

    return lifespan


# --------------------------------------------------------------------------- factory
RouteSpec = tuple[str, Callable[[Request], Awaitable[Response]], list[str]]
_PROBES: tuple[RouteSpec, ...] = (
    ("/api/phoenix/health", health_endpoint, ["GET"]),
    ("/healthz", healthz_endpoint, ["GET"]),
    ("/readyz", readyz_endpoint, ["GET"]),
)
# Which route is served on which port: the one source for the apps below and the OpenAPI documents.
ROUTES: dict[str, tuple[RouteSpec, ...]] = {
    "public": (
        ("/api/auth/phoenix", login_endpoint, ["POST"]),
        ("/api/auth/login", login_alias_endpoint, ["POST"]),
        (SESSION_PATH, session_endpoint, ["GET"]),
        ("/api/auth/logout", logout_endpoint, ["POST"]),
        *_PROBES,
        ("/openapi.json", openapi_endpoint, ["GET"]),
    ),
    "admin": (
        ("/api/auth/admin/users/{user_id}/revoke-sessions", revoke_user_sessions_endpoint, ["POST"]),
        ("/metrics", metrics_endpoint, ["GET"]),
        *_PROBES,
        ("/openapi.json", admin_openapi_endpoint, ["GET"]),
    ),
}


def openapi_document(settings: Settings, listener: str) -> dict[str, Any]:
    """The OpenAPI document served on `listener`'s /openapi.json: exactly its routes."""
    return openapi.document(settings, listener, [path for path, _, _ in ROUTES[listener]])


def _starlette(cls: type[Starlette], listener: str, metrics: Metrics, **kwargs: Any) -> Starlette:
    app = cls(
        routes=[Route(path, endpoint, methods=methods) for path, endpoint, methods in ROUTES[listener]],
        exception_handlers={PhoenixError: _phoenix_error_handler, HTTPException: _http_exception_handler},
        **kwargs,
    )
    route_names: dict[Callable[..., Any], str] = {endpoint: path for path, endpoint, _ in ROUTES[listener]}
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=route_names)
    app.add_middleware(DrainUnreadBody)
    return app


def create_app(settings: Settings | None = None) -> PhoenixApp:
    """Build the ASGI app (public and admin listeners); resources are opened by its lifespan."""
    settings = settings or Settings()
    configure_logging(settings)
    metrics = Metrics()
    app = _starlette(PhoenixApp, "public", metrics, lifespan=_make_lifespan(settings, metrics))
    assert isinstance(app, PhoenixApp)
    admin = _starlette(AdminApp, "admin", metrics)
    assert isinstance(admin, AdminApp)
    admin.public = app  # one set of resources, opened by the public app's lifespan
    app.admin_app, app.admin_port = admin, settings.admin_port
    app.session_cookie = settings.session_cookie_name
    app.drain = Drain()
    return app


def app_from_env() -> PhoenixApp:
    """uvicorn factory for worker processes: each worker builds its one Settings from the environment."""
    return create_app(Settings())
