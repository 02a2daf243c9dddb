"""Phoenix's app as the benchmark serves it: H1's app unchanged, plus a `/noop` route.

The no-op is the ceiling for session validation ("same server stack"): a Starlette route with
no I/O behind the same uvicorn settings and workers. It is dispatched here, in front of the
service's app, so the service itself carries no benchmark-only route. Every other request and
the lifespan go to the service's app untouched.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

NOOP_PATH = "/noop"


async def _noop(request: Request) -> Response:
    return PlainTextResponse("ok")


class WithNoop:
    """ASGI wrapper: `/noop` answered by a one-route Starlette app, everything else by `inner`."""

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner
        self.noop_app = Starlette(routes=[Route(NOOP_PATH, _noop, methods=["GET"])])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == NOOP_PATH:
            await self.noop_app(scope, receive, send)
            return
        await self.inner(scope, receive, send)


def create_phoenix_app() -> ASGIApp:
    """uvicorn factory: the service's app built from environment settings, wrapped with /noop."""
    from phoenix_auth.app import create_app
    from phoenix_auth.settings import Settings

    return WithNoop(create_app(Settings()))
