"""Draining before shutdown: a terminating pod moves its keep-alive clients to other pods first.

When Kubernetes deletes an auth pod it removes the pod from the Service's endpoints, runs the
container's preStop hook, then sends SIGTERM. kube-proxy stops routing NEW connections to the pod
within about a second, but connections already open keep reaching it, and uvicorn's shutdown closes
the idle ones: a client that sends its next request at that moment reads a reset. So the preStop
hook is `phoenix-auth drain --seconds N`, which marks the pod as draining (a file in /tmp, shared by
every worker process of the pod) and waits N seconds. While the mark exists, every response carries
`Connection: close` (the client opens its next connection, which kube-proxy sends to another pod)
and /readyz answers 503. When SIGTERM comes, no client is left mid-conversation.

The mark lives in the pod's /tmp emptyDir, which survives a container restart: `clear()` runs when
the server starts, so a restarted container never starts out draining.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from pathlib import Path

from starlette.types import Message, Send

POLL_SECONDS = 0.2


def drain_file() -> Path:
    """The mark: in the temporary directory ($TMPDIR, else /tmp: the pod's emptyDir)."""
    return Path(tempfile.gettempdir()) / "phoenix-auth.draining"


class Drain:
    """Whether this process's pod is draining (`active`), kept current by `watch()`."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or drain_file()
        self.active = False

    async def watch(self, interval: float = POLL_SECONDS) -> None:
        """Poll the mark (one stat every `interval` seconds; requests only read a bool)."""
        while True:
            self.active = self.path.exists()
            await asyncio.sleep(interval)


def closing(send: Send) -> Send:
    """Wrap an ASGI `send` so the response tells the client to close the connection after it."""

    async def send_closing(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
            message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await send(message)

    return send_closing


def clear() -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(drain_file())


def drain(seconds: float) -> None:
    """The preStop hook: mark the pod as draining, then hold SIGTERM back for `seconds`."""
    drain_file().touch()
    time.sleep(seconds)
