"""Helpers of the reliability tests: processes we own and may kill, and load we can bound.

Why a private PostgreSQL: these tests stop, kill and restart the database under load, and other
engineers' tests use the shared cluster on 5432 at the same time. So each test session creates
its own cluster with `initdb` in a temp dir (run as the `postgres` user when we are root), on a
free loopback port, with a unique superuser password (which the secrets test also plants).

- `PrivatePostgres`: initdb/start/stop(mode)/restart of a throw-away cluster; `create_database()`
  gives a migrated database of the project's schema.
- `PhoenixServer`: the real `phoenix-auth serve` console script as a subprocess on a free port,
  its stdout+stderr captured to a file, RSS of the process tree from /proc.
- `LoadRecorder` / `Sample`: every request's start time, latency, status and error code.
- `metric_value`: one sample out of a Prometheus text exposition.

Redis comes from the auth tests' kit (`authtestkit.RedisServer`, a private redis-server).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

AUTH_TESTS = Path(__file__).resolve().parents[1] / "integration" / "auth"
if str(AUTH_TESTS) not in sys.path:
    sys.path.insert(0, str(AUTH_TESTS))

from authtestkit import FAST_ARGON2, TEST_SIGNING_KEY, RedisServer, _migrate, fast_hash, free_port  # noqa: E402

__all__ = [
    "CLIENT_LIMITS",
    "FAST_ARGON2",
    "LoadRecorder",
    "PhoenixServer",
    "PrivatePostgres",
    "RedisServer",
    "Sample",
    "fast_hash",
    "free_port",
    "metric_value",
    "percentile",
]

# The service closes idle keep-alive connections after 5 s (uvicorn timeout_keep_alive): a client
# reusing one at that very moment gets a ReadError that says nothing about the service. Clients of
# these tests drop idle connections after 2 s instead.
CLIENT_LIMITS = httpx.Limits(max_connections=128, max_keepalive_connections=128, keepalive_expiry=2.0)

PG_BIN = Path(os.environ.get("PHOENIX_PG_BIN", "/usr/lib/postgresql/15/bin"))


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries needed for a private cluster are not installed."""


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to the `postgres` user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on a free loopback port, owned by one test session."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise PostgresUnavailable(f"{PG_BIN}/initdb not found (install postgresql-15)")
        self.dir = Path(tempfile.mkdtemp(prefix="phoenix-pg-"))
        self.data = self.dir / "data"
        self.logfile = self.dir / "server.log"
        self.port = free_port()
        # Unique per session, so the secrets test can grep for it.
        self.password = "pgpw-" + secrets.token_hex(12)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        pwfile = self.dir / "pw"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        pwfile.chmod(0o600)
        self._run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            timeout=120,
        )
        pwfile.unlink()

    def _run(self, cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            _as_postgres(cmd), capture_output=True, text=True, timeout=timeout, check=False, cwd=self.dir
        )
        if result.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed ({result.returncode}): {result.stderr[-2000:]}")
        return result

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=60 "
            "-c fsync=off -c full_page_writes=off -c synchronous_commit=on -c shared_buffers=32MB"
        )
        self._run(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.logfile),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            ],
            timeout=90,
        )

    def stop(self, mode: str = "fast") -> None:
        """`mode` is pg_ctl's: smart, fast, or immediate (a crash: recovery runs on the next start)."""
        with contextlib.suppress(RuntimeError):
            self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"])

    def running(self) -> bool:
        result = subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status"]),
            capture_output=True,
            text=True,
            check=False,
            cwd=self.dir,
        )
        return result.returncode == 0

    def pids(self) -> list[int]:
        """The postmaster and its children (backends, background workers)."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            return process_tree(int((self.data / "postmaster.pid").read_text().split()[0]))
        return []

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new database with the project's schema and the seed's indexes; returns its URL."""
        name = f"phoenix_r_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = self.url(name)
        _migrate(url)
        return url

    def cleanup(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def make_users(url: str, count: int, hashed: Any = None, prefix: str = "r") -> list[tuple[str, str, str]]:
    """Insert `count` users the way another app would; returns [(id, email, password)].

    `hashed(password) -> str` picks the hash function (fast argon2id by default)."""
    hashed = hashed or fast_hash
    tag = uuid.uuid4().hex[:8]
    rows = []
    for i in range(count):
        email = f"{prefix}-{tag}-{i}@example.com"
        password = secrets.token_urlsafe(12)
        rows.append((email, password, hashed(password)))
    out = []
    with psycopg.connect(url, autocommit=True) as conn:
        for email, password, digest in rows:
            row = conn.execute(
                "INSERT INTO users (email, name, role, hashed_password, team_name) "
                "VALUES (%s, 'Rel User', 'user', %s, 'Team R') RETURNING id",
                (email, digest),
            ).fetchone()
            assert row is not None
            out.append((row[0], email, password))
    return out


def base_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """Environment of a `phoenix-auth serve` process: cheap argon2, quiet summary, JSON logs."""
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "PHOENIX_ARGON2_MEMORY_KIB": str(FAST_ARGON2["argon2_memory_kib"]),
        "PHOENIX_ARGON2_TIME_COST": str(FAST_ARGON2["argon2_time_cost"]),
        "PHOENIX_ARGON2_PARALLELISM": "1",
        "PHOENIX_HASH_THREADS": "2",
        "PHOENIX_MAX_DB_CONNECTIONS": "4",
        "PHOENIX_MIN_DB_CONNECTIONS": "1",
        "PHOENIX_SUMMARY_INTERVAL": "0",
        "PHOENIX_LOG_FORMAT": "json",
        "PHOENIX_WORKERS": "1",
        "PHOENIX_CACHE_SIGNING_KEY": TEST_SIGNING_KEY,
    }
    env.update(extra)
    return env


def _children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                out += [int(p) for p in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return out


def rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_jiffies(pid: int) -> int:
    """utime + stime of one process (0 when it is gone)."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    return 0


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(values[:8])
    idle = values[3] + values[4]
    return total - idle, total


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(_children(current))
    return out


class PhoenixServer:
    """`phoenix-auth serve` on a free port with the given environment; output captured to a file."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = dict(env)  # what the test configured (DATABASE_URL, PHOENIX_ADMIN_TOKEN, ...)
        self.port = free_port()
        self.admin_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"  # admin API, /metrics
        fd, name = tempfile.mkstemp(prefix="phoenix-rel-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        full_env = {
            **os.environ,
            **env,
            "PHOENIX_PORT": str(self.port),
            "PHOENIX_ADMIN_PORT": str(self.admin_port),
            "PHOENIX_HOST": "127.0.0.1",
        }
        full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        exe = shutil.which("phoenix-auth")
        cmd = (
            [exe, "serve"]
            if exe
            else [
                sys.executable,
                "-c",
                "import sys; from phoenix_auth.cli import main; "
                "sys.argv=['phoenix-auth','serve']; raise SystemExit(main())",
            ]
        )
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(cmd, env=full_env, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until /readyz is 200 (PostgreSQL reachable) and the invalidation listener is up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"phoenix-auth serve exited {self.proc.returncode}:\n{self.output()[-4000:]}"
                )
            with contextlib.suppress(httpx.HTTPError, ValueError):
                r = httpx.get(self.base_url + "/readyz", timeout=2)
                if r.status_code == 200 and r.json().get("listener"):
                    return
            time.sleep(0.1)
        raise RuntimeError(f"phoenix-auth serve not ready in {timeout}s:\n{self.output()[-4000:]}")

    def pids(self) -> list[int]:
        """The server process and its uvicorn worker processes (if any)."""
        return [self.proc.pid, *_children(self.proc.pid)]

    def rss_kib(self) -> dict[int, int]:
        return {pid: rss_kib(pid) for pid in self.pids()}

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.output().splitlines():
            with contextlib.suppress(ValueError):
                value = json.loads(line)
                if isinstance(value, dict):
                    records.append(value)
        return records

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def cleanup(self) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            self.log_path.unlink()


# --------------------------------------------------------------------------- load bookkeeping
@dataclass(frozen=True, slots=True)
class Sample:
    kind: str  # "login" | "session" | ...
    started: float  # monotonic seconds
    latency: float  # seconds
    status: int  # 0 = transport error (connection refused, timeout, reset)
    error: str | None  # the body's `error` code, or the transport exception's type
    message: str | None = None
    retry_after: str | None = None


@dataclass
class LoadRecorder:
    samples: list[Sample] = field(default_factory=list)

    async def call(self, kind: str, coro: Any) -> httpx.Response | None:
        """Await one request, record it, never raise for HTTP-level or transport failures."""
        start = time.monotonic()
        try:
            response: httpx.Response = await coro
        except httpx.HTTPError as exc:
            self.samples.append(Sample(kind, start, time.monotonic() - start, 0, type(exc).__name__))
            return None
        latency = time.monotonic() - start
        code = message = None
        if response.status_code >= 400:
            with contextlib.suppress(ValueError, AttributeError):
                body = response.json()
                code, message = body.get("error"), body.get("message")
        self.samples.append(
            Sample(
                kind, start, latency, response.status_code, code, message, response.headers.get("retry-after")
            )
        )
        return response

    def between(self, start: float, end: float, kind: str | None = None) -> list[Sample]:
        return [s for s in self.samples if start <= s.started < end and (kind is None or s.kind == kind)]

    def by_status(self, samples: list[Sample] | None = None) -> dict[int, int]:
        out: dict[int, int] = {}
        for s in self.samples if samples is None else samples:
            out[s.status] = out.get(s.status, 0) + 1
        return out


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


_SAMPLE_RE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0.0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        m = _SAMPLE_RE.match(line)
        if not m or m.group("name") != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group("labels") or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(m.group("value"))
    return total
