"""Server processes under test: free loopback ports, start, wait until ready, stop.

Every server is a child process in its own process group, stopped (SIGTERM, then SIGKILL) by
its handle, so a benchmark never leaves anything running behind it. An app server listens on two
free ports of its own, like the service (`phoenix_auth.server`): the public one carries the load,
the admin one serves `/metrics` and health; several can run at once.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from phoenix_auth.settings import MIN_SECRET_BYTES
from phoenix_testkit.ports import free_port, free_ports

from .errors import ServerStartError


class Process:
    """One child process with its output in a log file."""

    def __init__(self, name: str, cmd: Sequence[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            list(cmd), env=dict(env), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout)
            except ProcessLookupError:
                pass
        self._log.close()


def wait_http(proc: Process, url: str, timeout: float = 60.0) -> None:
    """Wait until `url` answers with any HTTP status; raise ServerStartError with the log tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise ServerStartError(f"{proc.name} exited with {proc.proc.returncode}:\n{proc.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (loopback URL we built)
                return
        except urllib.error.HTTPError:
            return  # it answered
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise ServerStartError(f"{proc.name} not ready at {url} after {timeout:.0f} s:\n{proc.log_tail()}")


class AppServer(Process):
    """An app under test: public port `port` (the load), admin port `admin_port` (/metrics, health)."""

    def __init__(self, app: str, port: int, admin_port: int, env: Mapping[str, str], log_dir: Path) -> None:
        self.port, self.admin_port = port, admin_port
        listeners = {
            "PHOENIX_HOST": "127.0.0.1",
            "PHOENIX_PORT": str(port),
            "PHOENIX_ADMIN_PORT": str(admin_port),
        }
        cmd = [sys.executable, "-m", "phoenix_bench.serve", app]
        super().__init__(f"server-{app}", cmd, {**env, **listeners}, log_dir)


def start_app(app: str, env: Mapping[str, str], log_dir: Path) -> AppServer:
    """Start the naive or Phoenix app on two free loopback ports (public, admin) with `env` (workers
    from PHOENIX_WORKERS, see `app_env`) and wait until /noop answers on the public one."""
    port, admin_port = free_ports(2)
    proc = AppServer(app, port, admin_port, env, log_dir)
    try:
        wait_http(proc, f"http://127.0.0.1:{port}/noop")
    except ServerStartError:
        proc.stop()
        raise
    return proc


def app_env(database_url: str, redis_port: int, workers: int, **extra: str) -> dict[str, str]:
    """The environment every benchmarked server runs with: this process's, pointed at the bench
    database and the private Redis, quiet logs, no periodic summary; `extra` adds or overrides.

    A fresh random PHOENIX_CACHE_SIGNING_KEY (256 bits, never printed) switches the L2 Redis cache
    on: without one the service keeps user and session records out of Redis, and the benchmark
    would measure a different cache than production runs."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "PHOENIX_CACHE_SIGNING_KEY": secrets.token_urlsafe(MIN_SECRET_BYTES),
        "PHOENIX_LOG_LEVEL": "WARNING",
        "PHOENIX_SUMMARY_INTERVAL": "0",
        "PHOENIX_WORKERS": str(workers),
        **extra,
    }


def start_redis(log_dir: Path) -> tuple[Process, int]:
    """A private redis-server on a free port without persistence (never the shared 6379)."""
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="phoenix-bench-redis-", dir=log_dir))
    cmd = [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(data),
    ]
    proc = Process("redis", cmd, os.environ, log_dir)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, port
        except OSError:
            time.sleep(0.1)
    proc.stop()
    raise ServerStartError(f"redis-server not ready on port {port}:\n{proc.log_tail()}")
