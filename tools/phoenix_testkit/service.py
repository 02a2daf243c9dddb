"""The auth service as a process under test: its environment and a subprocess on free ports.

`service_env` is the environment every test service starts from (cheap argon2, JSON logs, no
periodic summary, L2 on with a per-session signing key); `ServiceProcess` runs a command with it on
two free loopback ports (public, admin), captures its output to a file and stops it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .ports import free_ports

FAST_ARGON2 = {"argon2_memory_kib": 8 * 1024, "argon2_time_cost": 1, "argon2_parallelism": 1}
# The L2 signing key every test service gets unless a test says otherwise (unset, L2 is off).
TEST_SIGNING_KEY = "test-l2-key-" + secrets.token_urlsafe(32)


def service_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """Environment of a test service; `extra` adds or overrides."""
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "PHOENIX_ARGON2_MEMORY_KIB": str(FAST_ARGON2["argon2_memory_kib"]),
        "PHOENIX_ARGON2_TIME_COST": str(FAST_ARGON2["argon2_time_cost"]),
        "PHOENIX_HASH_THREADS": "1",
        "PHOENIX_MAX_DB_CONNECTIONS": "3",
        "PHOENIX_MIN_DB_CONNECTIONS": "1",
        "PHOENIX_SUMMARY_INTERVAL": "0",
        "PHOENIX_LOG_FORMAT": "json",
        "PHOENIX_CACHE_SIGNING_KEY": TEST_SIGNING_KEY,
    }
    env.update(extra)
    return env


def get_json(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    """(status, parsed body or None) of a GET; raises OSError when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback URL we built)
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


class ServiceProcess:
    """`cmd` with `env` on two free loopback ports (PHOENIX_PORT, PHOENIX_ADMIN_PORT); output to a file."""

    def __init__(self, cmd: Sequence[str], env: Mapping[str, str], log_prefix: str = "phoenix-svc-") -> None:
        self.env = dict(env)  # what the test configured (DATABASE_URL, PHOENIX_ADMIN_TOKEN, ...)
        self.port, self.admin_port = free_ports(2)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"  # admin API, /metrics
        fd, name = tempfile.mkstemp(prefix=log_prefix, suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        full_env = {
            **os.environ,
            **env,
            "PHOENIX_PORT": str(self.port),
            "PHOENIX_ADMIN_PORT": str(self.admin_port),
        }
        full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(list(cmd), env=full_env, stdout=out, stderr=subprocess.STDOUT)

    def wait_until(self, path: str, ready: Callable[[int, Any], bool], timeout: float) -> None:
        """Until GET `path` on the public port gives (status, body) that `ready` accepts."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited {self.proc.returncode}:\n{self.output()[-4000:]}")
            with contextlib.suppress(OSError):
                if ready(*get_json(self.base_url + path, timeout=2)):
                    return
            time.sleep(0.1)
        raise RuntimeError(f"service not ready in {timeout}s:\n{self.output()[-4000:]}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines the service wrote."""
        records = []
        for line in self.output().splitlines():
            with contextlib.suppress(ValueError):
                value = json.loads(line)
                if isinstance(value, dict):
                    records.append(value)
        return records

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def cleanup(self) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            self.log_path.unlink()
