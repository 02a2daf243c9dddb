"""`scripts/bench` / `python -m phoenix_bench`: set up data, start servers, drive load, print tables.

One run measures, for the naive app and for Phoenix (same uvicorn settings, same hashing):
login latency at several offered loads (open loop, Zipf user mix), login throughput (closed
loop), session-validation latency at several offered loads, session and no-op throughput, the
cache hit ratio from Phoenix's own counters, and, outside HTTP, one argon2id verify and the
database lookups on a pool. Several runs are taken and the median of each number is published.
Servers are child processes on free loopback ports; the load generator runs in this process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from phoenix_testkit.prometheus import labelled_values

from . import dataset, loadgen, profile, servers, wrk
from .errors import BenchError
from .report import machine_facts, median_tree, write_json
from .stats import summarize_ms
from .tables import render_all
from .zipf import ZipfSampler

DEFAULT_BASE_URL = "postgresql://phoenix:phoenix@127.0.0.1:5432/phoenix"
LOGIN_PATH = "/api/auth/login"
SESSION_PATH = "/api/auth/session"
NOOP_PATH = "/noop"


@dataclass
class Config:
    users: int = 1_000_000
    runs: int = 3
    quick: bool = False
    database: str = "phoenix_bench"
    base_url: str = DEFAULT_BASE_URL
    password: str | None = None
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    zipf_s: float = 1.1
    sessions: int = 200
    login_fractions: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.9)
    session_rates: tuple[float, ...] = (50, 100, 250, 500, 1000, 2000)
    login_step_s: float = 6.0
    session_step_s: float = 4.0
    closed_s: float = 5.0
    warmup_s: float = 3.0
    table_login_fraction: float = 0.5
    table_session_rate: float = 250
    limit_session_rate: float = 1000  # table 2: session p99 target is at this offered rate
    cache_ttl_s: float = 300  # PHOENIX_CACHE_TTL the servers run with (the default)
    db_samples: int = 5000
    client: str = "auto"
    apps: tuple[str, ...] = ("naive", "phoenix")
    out_dir: Path = Path("docs/bench")
    max_minutes: float = 40.0
    profile: bool = False  # py-spy the Phoenix server during its closed-loop phases

    @classmethod
    def quick_defaults(cls, **overrides: Any) -> Config:
        base = cls(
            users=10_000,
            runs=1,
            quick=True,
            sessions=50,
            login_fractions=(0.05, 0.5, 0.9),
            session_rates=(50, 250, 1000),
            login_step_s=3.0,
            session_step_s=2.0,
            closed_s=3.0,
            warmup_s=1.0,
            db_samples=1000,
            out_dir=Path(tempfile.gettempdir()) / "phoenix-bench-quick",
            max_minutes=15.0,
        )
        for key, value in overrides.items():
            setattr(base, key, value)
        return base


def smoke_defaults() -> Config:
    """A seconds-long pass on tiny data that exercises every code path (numbers mean nothing)."""
    return Config.quick_defaults(
        users=1000,
        sessions=20,
        login_fractions=(0.05, 0.3),
        session_rates=(100, 300),
        login_step_s=1.5,
        session_step_s=1.0,
        closed_s=1.5,
        warmup_s=0.5,
        db_samples=200,
        limit_session_rate=300,
        max_minutes=5.0,
    )


class BudgetExhausted(BenchError):
    """--max-minutes ran out; runs completed before are still published."""


class Progress:
    """Timestamped progress lines on stderr, and the overall time budget."""

    def __init__(self, max_minutes: float) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + max_minutes * 60

    def __call__(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[bench {time.strftime('%H:%M:%S')} +{elapsed:5.0f}s] {message}", file=sys.stderr, flush=True)

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise BudgetExhausted("time budget (--max-minutes) exhausted")


def redact_url(url: str) -> str:
    """The URL without its password, for published results."""
    return re.sub(r"(://[^:/@]+):[^/]*@", r"\1:***@", url)


def open_connections(rate: float) -> int:
    """Connections for an open-loop step: enough never to be the bottleneck, few enough that each
    is reused well within the server's keep-alive timeout (5 s) at low rates."""
    return max(8, min(32, int(rate / 10)))


def login_request(email: str, password: str) -> bytes:
    body = json.dumps({"email": email, "password": password}).encode()
    return loadgen.encode_request(
        "POST", LOGIN_PATH, headers=(("Content-Type", "application/json"),), body=body
    )


def session_request(token: str) -> bytes:
    return loadgen.encode_request("GET", SESSION_PATH, headers=(("Authorization", f"Bearer {token}"),))


def _settings_from(env: dict[str, str]):
    from phoenix_auth.settings import Settings

    saved = dict(os.environ)
    try:
        os.environ.update(env)
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def measure_verify(env: dict[str, str], count: int = 20, parallel_s: float = 3.0) -> tuple[float, float]:
    """(median seconds of one argon2id verify on one thread, verifies/s with one thread per core).

    Same parameters as the servers (read from the same environment). The first number gives the
    issue's limit (cores / one verify); the second is what the cores really do in parallel here
    (memory bandwidth and other tenants included), printed next to it.
    """
    from concurrent.futures import ThreadPoolExecutor

    from phoenix_auth.passwords import PasswordHasher

    hasher = PasswordHasher(_settings_from(env))
    password = "benchmark-password"  # noqa: S105 - a throwaway password hashed here only
    try:
        stored = hasher.hash(password)
        hasher.verify(stored, password)
        samples = []
        for _ in range(count):
            t = time.perf_counter()
            hasher.verify(stored, password)
            samples.append(time.perf_counter() - t)
        cores = os.cpu_count() or 1
        deadline = time.perf_counter() + parallel_s

        def loop() -> int:
            n = 0
            while time.perf_counter() < deadline:
                hasher.verify(stored, password)
                n += 1
            return n

        started = time.perf_counter()
        with ThreadPoolExecutor(cores) as pool:
            done = sum(pool.map(lambda _: loop(), range(cores)))
        parallel_rate = done / (time.perf_counter() - started)
    finally:
        hasher.close()
    samples.sort()
    return samples[len(samples) // 2], parallel_rate


def _admin_get(admin_port: int, path: str) -> bytes:
    """GET `path` on a Phoenix server's admin listener (where /metrics and health are served);
    BenchError naming the URL when it does not answer 200."""
    url = f"http://127.0.0.1:{admin_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.read()
    except urllib.error.HTTPError as exc:
        raise BenchError(f"{url} answered HTTP {exc.code}: {exc.read()[:200]!r}") from None
    except OSError as exc:
        raise BenchError(f"{url}: {exc}") from None


def scrape_cache_counters(admin_port: int) -> dict[str, float] | None:
    """phoenix_cache_requests_total by "layer_result" and phoenix_cache_lookups_total by
    "lookup_result" (summed over workers) from the admin listener's /metrics; None if absent.

    Workers push their hot-path counts every FLUSH_INTERVAL, so the scrape waits a bit longer first:
    a phase that just ended is then counted in full by every worker, not only the one scraped."""
    from phoenix_auth.metrics import FLUSH_INTERVAL

    time.sleep(FLUSH_INTERVAL * 1.5)
    text = _admin_get(admin_port, "/metrics").decode()
    counters: dict[str, float] = {}
    for labels, value in labelled_values(text, "phoenix_cache_requests_total"):
        key = f"{labels.get('layer', '?')}_{labels.get('result', '?')}"
        counters[key] = counters.get(key, 0.0) + value
    for labels, value in labelled_values(text, "phoenix_cache_lookups_total"):
        key = "lookup_" + labels.get("result", "?")
        counters[key] = counters.get(key, 0.0) + value
    return counters or None


def require_l2_cache(admin_port: int, timeout: float = 10.0) -> None:
    """Refuse to measure a Phoenix whose L2 (Redis) cache is off: the published numbers say both
    cache layers are on. The reason comes from the service's health JSON (admin listener). A
    process reads L2 only after its start-up sweep of Redis: wait for that (`l2Ready`) too."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            stats = json.loads(_admin_get(admin_port, "/api/phoenix/health"))["cache"]["stats"]
        except (ValueError, KeyError, TypeError) as exc:
            raise BenchError(f"Phoenix's health JSON has no cache.stats: {exc}") from None
        if not stats.get("l2Enabled"):
            reason = stats.get("l2DisabledReason") or "no reason given"
            raise BenchError(f"Phoenix's L2 (Redis) cache is off ({reason}); the benchmark measures it on")
        if stats.get("l2Ready"):
            return
        if time.monotonic() > deadline:
            raise BenchError(f"Phoenix's L2 (Redis) cache was not ready (swept) {timeout:.0f} s after start")
        time.sleep(0.1)


def cache_delta(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, Any] | None:
    """Hit ratio over a phase from two counter snapshots: phoenix_cache_lookups_total when the
    service exports it (one count per logical lookup), else (L1 hits + L2 hits) / L1 lookups."""
    if before is None or after is None:
        return None
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    if "lookup_hit" in d or "lookup_miss" in d:  # the service's own logical-lookup counter
        lookups = d.get("lookup_hit", 0.0) + d.get("lookup_miss", 0.0)
        hits = d.get("lookup_hit", 0.0)
    else:
        lookups = d.get("l1_hit", 0.0) + d.get("l1_miss", 0.0)
        hits = d.get("l1_hit", 0.0) + d.get("l2_hit", 0.0)
    return {"counters": d, "lookups": lookups, "hit_ratio": hits / lookups if lookups else None}


def perfect_cache_ratio(history: Sequence[str], phase: Sequence[str]) -> float | None:
    """Hit ratio a cache that never evicts would reach on `phase`, having already seen `history`."""
    if not phase:
        return None
    seen = set(history)
    hits = 0
    for key in phase:
        if key in seen:
            hits += 1
        else:
            seen.add(key)
    return hits / len(phase)


def served_from_cache_share(samples: Sequence[loadgen.Sample]) -> float | None:
    """Share of successful logins whose user record came from a cache (`performance.cacheHits` >= 1).

    Counted per login from the responses, so lookups made for other reasons during the same
    window (session creation, invalidation checks) cannot inflate it.
    """
    flags = []
    for s in samples:
        try:
            hits = json.loads(s.body or b"{}").get("performance", {}).get("cacheHits")
        except (ValueError, AttributeError):
            continue
        if isinstance(hits, int | float):
            flags.append(hits >= 1)
    return sum(flags) / len(flags) if flags else None


def ttl_steady_state_ratio(sampler: ZipfSampler, rate: float, ttl_s: float) -> float | None:
    """Steady-state hit ratio ceiling of any cache whose entries live `ttl_s` after a miss.

    A user's entry is present iff the user was requested within the last TTL (Poisson arrivals at
    `rate` * p_k); so the ceiling is sum_k p_k * (1 - exp(-p_k * rate * ttl)). No cache with this
    TTL, whatever its size, can beat it on this mix at this login rate.
    """
    if rate <= 0:
        return None
    window = rate * ttl_s
    return sum(p * -math.expm1(-p * window) for p in (sampler.probability(k) for k in range(sampler.n)))


def saturated(p: Mapping[str, Any]) -> bool:
    """A step the server could not keep up with: later, higher rates are not run (bounded time)."""
    if p.get("skipped") or p.get("unfinished"):
        return True
    offered = p.get("offered_rate") or 0
    if offered and p.get("achieved_rate", 0) < 0.9 * offered:
        return True
    return (_get_p50(p) or 0) > 1000.0


def _get_p50(p: Mapping[str, Any]) -> float | None:
    return (p.get("latency") or {}).get("p50_ms")


def skipped_point(rate: float, fraction: float | None = None) -> dict[str, Any]:
    """Placeholder for a rate above one that already saturated the server."""
    p: dict[str, Any] = {"offered_rate": rate, "skipped": "saturated at a lower rate", "latency": None}
    if fraction is not None:
        p["fraction_of_capacity"] = fraction
    return p


def point(result: loadgen.RunResult, *, with_db_time: bool = False) -> dict[str, Any]:
    """One load step as published: corrected and uncorrected latency, achieved rate, errors."""
    ok = result.ok
    data: dict[str, Any] = {
        "offered_rate": result.offered_rate,
        "achieved_rate": result.achieved_rate(),
        "completed_ok": len(ok),
        "errors": result.errors,
        "unfinished": result.unfinished,
        "statuses": {str(k): v for k, v in loadgen.status_summary(result).items()},
        "latency": _d(summarize_ms(loadgen.corrected_latency(s) for s in ok)),
        "service_time": _d(summarize_ms(loadgen.service_time(s) for s in ok)),
        "dispatch_lateness": _d(
            summarize_ms(v for v in (loadgen.dispatch_lateness(s) for s in result.samples) if v is not None)
        ),
    }
    if with_db_time:
        db_ms, total_ms, hits = [], [], []
        for s in ok:
            try:
                perf = json.loads(s.body or b"{}").get("performance", {})
            except ValueError:
                continue
            if isinstance(perf.get("totalTime"), int | float):
                total_ms.append(perf["totalTime"] / 1000.0)
            if isinstance(perf.get("databaseTime"), int | float):
                db_ms.append(perf["databaseTime"] / 1000.0)
            if isinstance(perf.get("cacheHits"), int | float):
                hits.append(perf["cacheHits"])
        data["server_db_time"] = _d(summarize_ms(db_ms))
        data["server_total_time"] = _d(summarize_ms(total_ms))
        verify = [v for v in (server_timing_ms(s.server_timing, "verify") for s in ok) if v is not None]
        data["server_verify_time"] = _d(summarize_ms(v / 1000.0 for v in verify))
        data["mean_cache_hits_per_login"] = sum(hits) / len(hits) if hits else None
    return data


def server_timing_ms(header: str | None, name: str) -> float | None:
    """The `dur` of metric `name` in a Server-Timing header (e.g. `verify;dur=31.2`), in ms."""
    if not header:
        return None
    for part in header.split(","):
        fields = [f.strip() for f in part.split(";")]
        if fields[0] == name:
            for f in fields[1:]:
                if f.startswith("dur="):
                    try:
                        return float(f[4:])
                    except ValueError:
                        return None
    return None


def _d(summary) -> dict | None:
    return summary.to_dict() if summary else None


class AppBench:
    """All measurements of one app in one run."""

    def __init__(
        self,
        cfg: Config,
        app: str,
        server: servers.AppServer,
        env: dict[str, str],
        log: Progress,
        sampler: ZipfSampler,
        password: str,
        capacity: float,
        use_wrk: bool,
        run_index: int = 1,
    ) -> None:
        self.cfg, self.app, self.env, self.log = cfg, app, env, log
        self.port, self.admin_port, self.server_pid = server.port, server.admin_port, server.pid
        self.sampler, self.password, self.capacity, self.use_wrk = sampler, password, capacity, use_wrk
        self.sent_emails: list[str] = []
        self.run_index = run_index
        self.profiles: dict[str, Any] = {}

    def profiled(self, phase: str, seconds: float) -> contextlib.AbstractContextManager[None]:
        """py-spy the server during a phase when --profile is on (Phoenix only), else nothing."""
        if not (self.cfg.profile and self.app == "phoenix" and self.server_pid and profile.available()):
            return contextlib.nullcontext()
        result: dict[str, Any] = {}
        self.profiles[phase] = result
        out = self.cfg.out_dir / f"profile-{self.app}-{phase}.txt"
        return profile.record(self.server_pid, seconds, out, result)

    def _zipf_emails(self, count: int) -> list[str]:
        return [dataset.email_at_rank(r) for r in self.sampler.samples(count)]

    def _open(self, requests: Sequence[bytes], rate: float, duration: float, keep: bool) -> loadgen.RunResult:
        self.log.check()
        return loadgen.run(
            lambda: loadgen.open_loop(
                "127.0.0.1",
                self.port,
                requests,
                rate=rate,
                duration=duration,
                connections=open_connections(rate),
                drain_timeout=5.0,
                keep_bodies=keep,
            )
        )

    def _closed(
        self, requests: Sequence[bytes], duration: float, connections: int, keep: bool = False
    ) -> loadgen.RunResult:
        self.log.check()
        return loadgen.run(
            lambda: loadgen.closed_loop(
                "127.0.0.1",
                self.port,
                requests,
                duration=duration,
                connections=connections,
                keep_bodies=keep,
            )
        )

    def tokens(self) -> list[str]:
        """Session tokens for the session mix: Phoenix via its login API, naive inserted directly."""
        emails = [dataset.email_at_rank(r) for r in range(self.cfg.sessions)]
        if self.app == "naive":
            return dataset.insert_naive_sessions(self.env["DATABASE_URL"], emails)
        tokens: list[str] = []
        run = loadgen.run(
            lambda: _login_all(self.port, emails, self.password, connections=2 * self.cfg.workers)
        )
        for body in run:
            try:
                tokens.append(json.loads(body)["session"]["sessionId"])
            except (ValueError, KeyError, TypeError):
                continue
        if not tokens:
            raise BenchError(f"{self.app}: no login succeeded; check the password and the server log")
        return tokens

    def closed_http(
        self,
        requests: Sequence[bytes],
        wrk_requests: Sequence[wrk.WrkRequest],
        sequence: Sequence[int],
        duration: float,
    ) -> dict[str, Any]:
        if self.use_wrk:
            r = wrk.run_wrk(
                f"http://127.0.0.1:{self.port}", wrk_requests, sequence, duration=duration, connections=16
            )
            return {
                "client": "wrk",
                "ok_per_s": r.ok_per_s,
                "errors": r.non_2xx + r.socket_errors,
                "latency_ms": r.latency_ms,
            }
        res = self._closed([requests[i] for i in sequence], duration, 16)
        return {
            "client": "python",
            "ok_per_s": len(res.ok) / duration,
            "errors": res.errors,
            "latency": _d(summarize_ms(loadgen.service_time(s) for s in res.ok)),
        }

    def run(self) -> dict[str, Any]:
        cfg, log = self.cfg, self.log
        out: dict[str, Any] = {}
        url = self.env["DATABASE_URL"]
        buffers_before = dataset.buffer_stats(url)
        tokens = self.tokens()
        if self.app == "phoenix":  # those logins filled the cache too
            self.sent_emails += [dataset.email_at_rank(r) for r in range(self.cfg.sessions)]
        log(f"{self.app}: {len(tokens)} session tokens ready")
        session_reqs = [session_request(t) for t in tokens]
        token_sampler = ZipfSampler(len(tokens), cfg.zipf_s, seed=7)
        session_seq = token_sampler.samples(20_000)
        mixed_sessions = [session_reqs[i] for i in session_seq]

        # warm-up: hash pool, DB pool, caches, JIT of nothing (it is CPython): discarded
        warm = self._zipf_emails(max(10, int(self.capacity * cfg.warmup_s * 0.3)))
        self.sent_emails += warm
        self._open(
            [login_request(e, self.password) for e in warm],
            max(1.0, self.capacity * 0.3),
            cfg.warmup_s,
            False,
        )
        self._closed(mixed_sessions, cfg.warmup_s, 8)

        sweep: list[dict[str, Any]] = []
        for fraction in cfg.login_fractions:
            rate = max(0.5, fraction * self.capacity)
            if sweep and saturated(sweep[-1]):
                sweep.append(skipped_point(rate, fraction))
                continue
            emails = self._zipf_emails(max(3, round(rate * cfg.login_step_s)))
            self.sent_emails += emails
            res = self._open([login_request(e, self.password) for e in emails], rate, cfg.login_step_s, True)
            p = point(res, with_db_time=True)
            p["fraction_of_capacity"] = fraction
            sweep.append(p)
            lat = p["latency"] or {}
            log(
                f"{self.app} login {rate:6.1f}/s: p50 {lat.get('p50_ms', float('nan')):7.1f} ms  "
                f"p99 {lat.get('p99_ms', float('nan')):7.1f} ms  ok {p['completed_ok']}  "
                f"errors {p['errors']}"
            )
            time.sleep(1.0 if not p["unfinished"] else 3.0)
        out["login_sweep"] = sweep

        # login throughput, closed loop; also the steady-state cache window for user records
        emails = self._zipf_emails(max(50, round(self.capacity * cfg.closed_s * 2)))
        before = scrape_cache_counters(self.admin_port) if self.app == "phoenix" else None
        res = self._closed(
            [login_request(e, self.password) for e in emails], cfg.closed_s, 4 * cfg.workers, keep=True
        )
        after = scrape_cache_counters(self.admin_port) if self.app == "phoenix" else None
        done = [emails[s.index] for s in res.samples]
        out["login_throughput"] = len(res.ok) / cfg.closed_s
        out["login_throughput_errors"] = res.errors
        out["login_cache_counters"] = cache_delta(before, after)
        out["login_cache"] = {"hit_ratio": served_from_cache_share(res.ok)} if self.app == "phoenix" else None
        out["login_cache_perfect"] = perfect_cache_ratio(self.sent_emails, done)
        out["login_cache_ttl_bound"] = ttl_steady_state_ratio(
            self.sampler, out["login_throughput"], cfg.cache_ttl_s
        )
        self.sent_emails += done
        log(
            f"{self.app} login closed loop: {out['login_throughput']:.1f} ok/s, errors {res.errors}, "
            f"cache {_pct((out['login_cache'] or {}).get('hit_ratio'))} "
            f"(never-evicting cache: {_pct(out['login_cache_perfect'])})"
        )
        time.sleep(1.0)

        sweep = []
        for rate in cfg.session_rates:
            if sweep and saturated(sweep[-1]):
                sweep.append(skipped_point(rate))
                continue
            count = max(1, round(rate * cfg.session_step_s))
            reqs = [mixed_sessions[i % len(mixed_sessions)] for i in range(count)]
            res = self._open(reqs, rate, cfg.session_step_s, False)
            p = point(res)
            sweep.append(p)
            lat = p["latency"] or {}
            log(
                f"{self.app} session {rate:6.0f}/s: p50 {lat.get('p50_ms', float('nan')):7.2f} ms  "
                f"p99 {lat.get('p99_ms', float('nan')):7.2f} ms  achieved {p['achieved_rate']:.0f}/s  "
                f"errors {p['errors']}"
            )
            time.sleep(1.0 if not p["unfinished"] else 3.0)
        out["session_sweep"] = sweep

        wrk_sessions = [
            wrk.WrkRequest("GET", SESSION_PATH, (("Authorization", f"Bearer {t}"),)) for t in tokens
        ]
        before = scrape_cache_counters(self.admin_port) if self.app == "phoenix" else None
        out["session_closed"] = self.closed_http(session_reqs, wrk_sessions, session_seq[:5000], cfg.closed_s)
        after = scrape_cache_counters(self.admin_port) if self.app == "phoenix" else None
        out["session_cache"] = cache_delta(before, after)
        out["noop_closed"] = self.closed_http(
            [loadgen.encode_request("GET", NOOP_PATH)], [wrk.WrkRequest("GET", NOOP_PATH)], [0], cfg.closed_s
        )
        log(
            f"{self.app} closed loop: session {out['session_closed']['ok_per_s']:,.0f} ok/s, "
            f"no-op {out['noop_closed']['ok_per_s']:,.0f} ok/s ({out['session_closed']['client']}); "
            f"session cache {_pct((out['session_cache'] or {}).get('hit_ratio'))}"
        )

        if self.app == "phoenix":
            # the harness + server-stack floor for table 2's session p99 row: same rate, no work
            rate = cfg.limit_session_rate
            count = max(1, round(rate * cfg.session_step_s))
            res = self._open([loadgen.encode_request("GET", NOOP_PATH)] * 1, rate, cfg.session_step_s, False)
            out["noop_open"] = point(res)
            lat = out["noop_open"]["latency"] or {}
            log(
                f"{self.app} no-op {rate:6.0f}/s: p50 {lat.get('p50_ms', float('nan')):7.2f} ms  "
                f"p99 {lat.get('p99_ms', float('nan')):7.2f} ms ({count} requests)"
            )

        buffers_after = dataset.buffer_stats(url)
        hit = buffers_after[0] - buffers_before[0]
        read = buffers_after[1] - buffers_before[1]
        out["pg_buffer_hit_ratio"] = hit / (hit + read) if hit + read else None
        if cfg.profile and self.app == "phoenix" and self.run_index == 1:
            # separate phases: py-spy's own CPU would distort the measured ones on shared cores
            with self.profiled("login", cfg.closed_s):
                self._closed([login_request(e, self.password) for e in emails], cfg.closed_s, 4 * cfg.workers)
            with self.profiled("session", cfg.closed_s):
                self.closed_http(session_reqs, wrk_sessions, session_seq[:5000], cfg.closed_s)
            with self.profiled("noop", cfg.closed_s):
                self.closed_http(
                    [loadgen.encode_request("GET", NOOP_PATH)],
                    [wrk.WrkRequest("GET", NOOP_PATH)],
                    [0],
                    cfg.closed_s,
                )
            log(f"{self.app}: profiles written to {cfg.out_dir}/profile-{self.app}-*.txt")
        if self.profiles:
            out["profile"] = self.profiles
        return out


async def _login_all(port: int, emails: Sequence[str], password: str, connections: int) -> list[bytes]:
    """Log every email in once (closed loop, bounded to 120 s); the response bodies."""
    import asyncio

    queue: asyncio.Queue[str] = asyncio.Queue()
    for e in emails:
        queue.put_nowait(e)
    bodies: list[bytes] = []

    async def worker() -> None:
        conn = loadgen.HttpConnection("127.0.0.1", port)
        try:
            while not queue.empty():
                email = queue.get_nowait()
                response = await conn.request(login_request(email, password))
                if response.status == 200:
                    bodies.append(response.body)
        finally:
            conn.close()

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(connections))), timeout=120)
    return bodies


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f} %"


def one_run(
    cfg: Config,
    index: int,
    env: dict[str, str],
    log: Progress,
    password: str,
    redis_port: int,
    log_dir: Path,
    use_wrk: bool,
) -> dict[str, Any]:
    url = env["DATABASE_URL"]
    log(f"run {index}/{cfg.runs}: measuring one argon2id verify")
    verify_s, parallel_rate = measure_verify(env)
    capacity = (os.cpu_count() or 1) / verify_s
    log(
        f"run {index}/{cfg.runs}: verify {verify_s * 1000:.1f} ms -> limit {capacity:.1f} logins/s on "
        f"{os.cpu_count()} cores; measured with one hashing thread per core: {parallel_rate:.1f}/s"
    )
    sampler_emails = [dataset.email_at_rank(i) for i in range(min(cfg.users, 2000))]
    db = dataset.db_latency(url, sampler_emails, cfg.db_samples)
    log(
        f"run {index}/{cfg.runs}: SELECT 1 p50 {db['select_1']['p50_ms']:.3f} ms, lookup p50 "
        f"{db['phoenix_lookup']['p50_ms']:.3f} p99 {db['phoenix_lookup']['p99_ms']:.3f} ms, naive lookup p50 "
        f"{db['naive_lookup']['p50_ms']:.1f} ms"
    )
    run: dict[str, Any] = {
        "verify_ms": verify_s * 1000,
        "hash_capacity_per_s": capacity,
        "hash_parallel_measured_per_s": parallel_rate,
        "db": db,
        "apps": {},
    }
    order = list(cfg.apps) if index % 2 else list(reversed(cfg.apps))
    for app in order:
        _flush_redis(redis_port)
        server_env = dict(env)
        if app == "phoenix":
            server_env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="prom-", dir=log_dir)
        proc = servers.start_app(app, server_env, log_dir)
        log(
            f"run {index}/{cfg.runs}: started {app} on 127.0.0.1:{proc.port} (admin {proc.admin_port}, "
            f"{cfg.workers} workers)"
        )
        try:
            sampler = ZipfSampler(cfg.users, cfg.zipf_s, seed=index)
            bench = AppBench(cfg, app, proc, server_env, log, sampler, password, capacity, use_wrk, index)
            try:
                if app == "phoenix":
                    require_l2_cache(proc.admin_port)
                run["apps"][app] = bench.run()
            except BudgetExhausted:
                raise
            except (BenchError, OSError, ValueError) as exc:
                # one app failing must not hide the other's numbers; the error is published
                log(f"run {index}/{cfg.runs}: {app} failed: {type(exc).__name__}: {exc}")
                run["apps"][app] = {
                    "error": f"{type(exc).__name__}: {exc}"[:500],
                    "server_log": proc.log_tail(800),
                }
        finally:
            proc.stop()
    return run


def _flush_redis(port: int) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"FLUSHALL\r\n")
        s.recv(64)


def run_benchmark(cfg: Config) -> dict[str, Any]:
    log = Progress(cfg.max_minutes)
    facts = machine_facts()
    log(f"machine: {facts['nproc']} cores, {facts['cpu_model']}, load {facts['loadavg_at_start']}")
    use_wrk = cfg.client == "wrk" or (cfg.client == "auto" and wrk.available())
    url = dataset.with_database(cfg.base_url, cfg.database)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    log_dir = Path(tempfile.mkdtemp(prefix="phoenix-bench-"))
    redis_proc, redis_port = servers.start_redis(log_dir)
    env = servers.app_env(url, redis_port, cfg.workers, PHOENIX_CACHE_TTL=str(int(cfg.cache_ttl_s)))
    runs = []
    try:
        password = dataset.ensure_seeded(url, cfg.users, env, cfg.password, log)
        dataset.prepare_naive_tables(url, log)
        plan = dataset.explain_lookup(url, dataset.email_at_rank(0))
        log("login lookup plan: " + plan.splitlines()[0])
        for i in range(1, cfg.runs + 1):
            try:
                runs.append(one_run(cfg, i, env, log, password, redis_port, log_dir, use_wrk))
            except BudgetExhausted:
                log(f"time budget exhausted during run {i}: publishing the {len(runs)} complete run(s)")
                if not runs:
                    raise
                break
            write_json(cfg.out_dir / "results-partial.json", {"machine": facts, "runs": runs})
    finally:
        redis_proc.stop()
    results = {
        "machine": facts,
        "config": {
            k: (str(v) if isinstance(v, Path) else redact_url(v) if k == "base_url" else v)
            for k, v in asdict(cfg).items()
            if k != "password"
        },
        "load_generator": "wrk (closed loop) + own asyncio client (open loop)"
        if use_wrk
        else "own asyncio client",
        "lookup_plan": plan,
        "runs": runs,
        "median": median_tree(runs),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json(cfg.out_dir / "results.json", results)
    (cfg.out_dir / "results-partial.json").unlink(missing_ok=True)
    tables = render_all(results)
    (cfg.out_dir / "tables.md").write_text(tables + "\n")
    print(tables)
    try:
        from .plot import plot_latency

        png = plot_latency(results, cfg.out_dir / "latency-vs-load.png")
        log(f"plot written: {png}")
    except ImportError:
        log("matplotlib not installed (phoenix-dev-tools[plot]); no plot")
    log(f"results: {cfg.out_dir / 'results.json'}, {cfg.out_dir / 'tables.md'}; server logs in {log_dir}")
    return results


def parse_args(argv: Sequence[str] | None) -> Config:
    p = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, help="demo users to seed (default 1,000,000; --quick: 10,000)")
    p.add_argument("--runs", type=int, help="runs; the median is published (default 3; --quick: 1)")
    p.add_argument("--quick", action="store_true", help="short steps, fewer points: a pass in a few minutes")
    p.add_argument(
        "--smoke", action="store_true", help="seconds-long pass on tiny data: checks the harness only"
    )
    p.add_argument(
        "--database", default="phoenix_bench", help="database to create and use (default phoenix_bench)"
    )
    p.add_argument("--password", help="demo users' password (default: parsed from seed-demo's output)")
    p.add_argument("--workers", type=int, help="server worker processes (default: nproc)")
    p.add_argument("--zipf-s", type=float, help="Zipf exponent of the user mix (default 1.1)")
    p.add_argument(
        "--client",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="closed-loop client (auto: wrk when installed)",
    )
    p.add_argument("--apps", default="naive,phoenix", help="comma-separated: naive,phoenix")
    p.add_argument("--out", type=Path, help="output directory (default docs/bench; --quick: a temp dir)")
    p.add_argument("--max-minutes", type=float, help="hard time budget for the whole benchmark")
    p.add_argument(
        "--profile",
        action="store_true",
        help="extra closed-loop phases (not measured) with py-spy on the Phoenix server",
    )
    args = p.parse_args(argv)
    cfg = smoke_defaults() if args.smoke else Config.quick_defaults() if args.quick else Config()
    cfg.base_url = os.environ.get("DATABASE_URL", DEFAULT_BASE_URL)
    for name in ("users", "runs", "workers", "zipf_s", "max_minutes", "password"):
        if getattr(args, name) is not None:
            setattr(cfg, name, getattr(args, name))
    if args.out is not None:
        cfg.out_dir = args.out
    cfg.database, cfg.client, cfg.profile = args.database, args.client, args.profile
    cfg.apps = tuple(a for a in args.apps.split(",") if a)
    if not set(cfg.apps) <= {"naive", "phoenix"} or not cfg.apps:
        p.error("--apps takes naive and/or phoenix")
    if cfg.runs < 1 or cfg.users < cfg.sessions:
        p.error("--runs must be >= 1 and --users >= the number of session tokens")
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    try:
        run_benchmark(cfg)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    return 0
