"""Run the service under uvicorn (uvloop + httptools) with `settings.workers` worker processes.

Two listening sockets, one set of workers: PHOENIX_PORT (public) and PHOENIX_ADMIN_PORT (admin
API, /metrics) are bound here, both on PHOENIX_HOST, and handed to uvicorn, which serves both
from every worker; the app tells them apart by the connection's local port (see app.py). One
app per worker keeps one pool, one cache and one invalidation listener per process, where a
second app or server per port would double them.

With one worker the app is built here from the given settings. With several, uvicorn spawns
processes that import the factory (`phoenix_auth.app:app_from_env` unless told otherwise), so
each worker builds its one Settings from the same environment (the CLI builds its Settings from
the environment too).

Metrics across workers: if `PROMETHEUS_MULTIPROC_DIR` is unset and `workers > 1`, a fresh
temporary directory is created, exported to the workers (prometheus-client reads it at import)
and removed on exit; a scrape of any worker then reports all of them.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from . import drain
from .hashpool import SOCKET_ENV, HashServer, metrics_observer
from .passwords import PasswordHasher
from .settings import Settings

FACTORY = "phoenix_auth.app:app_from_env"
STARTUP_FAILURE = 3  # uvicorn's exit status when the server could not start


def bind(host: str, port: int, variable: str) -> socket.socket:
    """A listening-ready TCP socket on host:port, inheritable by worker processes (what uvicorn's
    own `Config.bind_socket` does); exits naming `variable` when the port cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        print(f"phoenix-auth: cannot listen on {host}:{port} ({variable}): {exc.strerror}", file=sys.stderr)
        raise SystemExit(STARTUP_FAILURE) from None
    sock.set_inheritable(True)
    return sock


def run(settings: Settings, factory: str = FACTORY) -> None:
    """Serve until interrupted (blocks). `factory` is the import string worker processes build
    their app from (the benchmark passes one that wraps the service's app)."""
    created_dir: str | None = None
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        created_dir = tempfile.mkdtemp(prefix="phoenix-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = created_dir
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "on",
        "access_log": False,
        "log_config": None,
        "proxy_headers": False,  # X-Forwarded-For is honoured only from PHOENIX_TRUSTED_PROXIES
        "server_header": False,
        "timeout_keep_alive": 5,
        "timeout_graceful_shutdown": 10,
        "backlog": 2048,
    }
    drain.clear()  # a mark left in the pod's /tmp by a previous container of the pod
    sockets = [
        bind(settings.host, settings.port, "PHOENIX_PORT"),
        bind(settings.host, settings.admin_port, "PHOENIX_ADMIN_PORT"),
    ]
    started = True
    try:
        if settings.workers > 1:
            # One hashing budget for the pod: this process hashes for every worker (hashpool.py).
            hasher = PasswordHasher(settings)
            hash_server = HashServer(hasher.operations(), settings.hash_threads, metrics_observer())
            os.environ[SOCKET_ENV] = hash_server.path
            try:
                config = uvicorn.Config(factory, factory=True, workers=settings.workers, **common)
                Multiprocess(config, sockets=sockets).run()
            finally:
                os.environ.pop(SOCKET_ENV, None)
                hash_server.close()
                hasher.close()
        else:
            if factory == FACTORY:
                from .app import create_app

                config = uvicorn.Config(create_app(settings), **common)
            else:
                config = uvicorn.Config(factory, factory=True, **common)
            server = uvicorn.Server(config)
            server.run(sockets=sockets)
            started = server.started
    except KeyboardInterrupt:
        pass
    finally:
        for sock in sockets:
            sock.close()
        if created_dir:
            shutil.rmtree(created_dir, ignore_errors=True)
    if not started:
        raise SystemExit(STARTUP_FAILURE)
