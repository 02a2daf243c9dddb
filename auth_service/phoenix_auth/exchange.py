"""What every HTTP request shares, on raw ASGI: reading its token, answering it, timing it.

Two paths answer requests: Starlette (routes behind `app.MetricsMiddleware`) and `PhoenixApp`'s
direct ASGI path for GET /api/auth/session, the hot route, which skips Starlette's per-request
machinery. Both read tokens, render answers and count requests through the helpers here, so the
two cannot drift apart:

- `session_token` / `bearer_token`: the session token (Bearer header first, then the session
  cookie) and a Bearer token, parsed from the raw header list exactly as Starlette's
  `Request.headers` (the first Authorization header) and `Request.cookies` (every Cookie header,
  later ones overriding) read them; a test holds the two equal.
- `Exchange`: one request's answer as metrics and logs see it: the status sent, an unexpected
  exception logged and turned into a 500 JSON error when nothing was sent yet (error bodies are
  always `errors.error_response`), and one duration sample by route template when it ends.
"""

from __future__ import annotations

import logging
import time

from starlette.requests import cookie_parser
from starlette.types import Message, Receive, Scope, Send

from .errors import InternalError, PhoenixError, error_response
from .metrics import Metrics

log = logging.getLogger("phoenix_auth.app")

KNOWN_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
Headers = list[tuple[bytes, bytes]]


def _bearer(authorization: bytes | None) -> str | None:
    if authorization:
        scheme, _, rest = authorization.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and rest.strip():
            return rest.strip()
    return None


def bearer_token(headers: Headers) -> str | None:
    """The token of the first Authorization header when it is `Bearer <token>`."""
    for key, value in headers:
        if key == b"authorization":
            return _bearer(value)
    return None


def session_token(headers: Headers, cookie_name: str) -> str | None:
    """The Bearer token, else the session cookie (the last Cookie header that sets it); None
    when neither is there or both are empty."""
    authorization = None
    cookies: list[bytes] = []
    for key, value in headers:
        if key == b"authorization":
            if authorization is None:
                authorization = value
        elif key == b"cookie":
            cookies.append(value)
    token = _bearer(authorization)
    if token:
        return token
    for cookie in cookies:
        parsed = cookie_parser(cookie.decode("latin-1"))
        if cookie_name in parsed:
            token = parsed[cookie_name]
    return token or None


class Exchange:
    """One HTTP request from its start to its metric sample.

    exchange = Exchange(scope, receive, send)
    try:
        ...  # answer through exchange.send (or exchange.answer / exchange.error)
    except Exception:
        await exchange.failed()
    finally:
        exchange.done(metrics, route)
    """

    __slots__ = ("_receive", "_scope", "_send", "start", "started", "status")

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._scope = scope
        self._receive = receive
        self._send = send
        self.start = time.perf_counter()
        self.status = 500  # until a response starts: what an exception before it becomes
        self.started = False

    async def send(self, message: Message) -> None:
        """`send` for an ASGI app that answers this request: notes the status it starts with."""
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.started = True
        await self._send(message)

    async def answer(self, status: int, headers: Headers, body: bytes) -> None:
        """A whole response in two messages (the hot path's own rendering)."""
        self.status, self.started = status, True
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})

    async def error(self, exc: PhoenixError) -> None:
        """`exc` rendered as every error is (`error_response`)."""
        await error_response(exc)(self._scope, self._receive, self.send)

    async def failed(self) -> None:
        """In an `except Exception:` block: log the exception (with the path, never headers or
        body) and answer 500 INTERNAL_ERROR if no response has started (else the client sees a
        cut-off response)."""
        log.exception("unhandled error", extra={"fields": {"path": self._scope.get("path", "")[:200]}})
        if not self.started:
            await self.error(InternalError())

    def done(self, metrics: Metrics, route: str) -> None:
        """One sample of the request duration metric: route template, method, status."""
        method = self._scope["method"]
        metrics.request(
            route,
            method if method in KNOWN_METHODS else "OTHER",
            self.status,
            time.perf_counter() - self.start,
        )
