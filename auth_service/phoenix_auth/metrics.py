"""Prometheus metrics and the in-process counters behind /api/phoenix/health and the summary log line.

Multi-worker choice: uvicorn runs several worker processes behind one port, so a scrape lands
on a random worker. We use prometheus-client's multiprocess mode: when `PROMETHEUS_MULTIPROC_DIR`
is set (server.run sets it to a fresh temporary directory when `workers > 1` and it is unset),
every worker writes its samples to memory-mapped files there and /metrics aggregates all of them
with `MultiProcessCollector`. Gauges use `livesum` so the pool gauges add up across live workers;
each worker marks itself dead on shutdown. With one worker and no directory, metrics live in a
registry owned by the app (one per `create_app`, so tests can build many apps in one process).

Hot-path counts are deferred: in multiprocess mode every prometheus-client update is a locked
mmap write with a pid check, and a session check made seven of them (~10 % of a worker's CPU at
saturation). The counters a session check touches (cache requests and lookups, session outcomes,
the HTTP histogram) are accumulated in plain per-process numbers and pushed to prometheus-client
by `flush()`: every FLUSH_INTERVAL seconds (the app's lifespan runs it), before every /metrics
render, and at shutdown. A scrape of any worker therefore sees its own counts exactly and every
other worker's counts as of at most FLUSH_INTERVAL ago. Rare events (logins, degradations,
invalidations, DB queries, gauges) are still written at once.

Names (the dashboard and alert rules depend on them, do not rename):
  phoenix_http_request_duration_seconds{route,method,status}   histogram
  phoenix_db_query_duration_seconds{query}                     histogram
  phoenix_cache_requests_total{layer,result}                   counter  layer=l1|l2, result=hit|miss|error
  phoenix_cache_lookups_total{result}                          counter  result=hit|miss, once per lookup:
                                                      hit = served by L1 or L2, miss = by PostgreSQL
  phoenix_db_pool_connections{state}                           gauge    state=in_use|idle|waiting
  phoenix_login_attempts_total{outcome}                        counter
  phoenix_sessions_validated_total{outcome}                    counter
  phoenix_degraded_operations_total{component}                 counter  component=redis|listener
  phoenix_cache_invalidations_total{kind}                      counter  kind=user|session|flush
  phoenix_dependency_up{dependency}                            gauge    dependency=database|redis|listener
  phoenix_cache_l2_rejected_total{kind,reason}                 counter  kind=user|session,
                                                      reason=signature|expired|malformed (signing.py)
  phoenix_login_untrusted_private_peer_total                   counter  logins whose TCP peer is a private
                                                      address outside PHOENIX_TRUSTED_PROXIES
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
DB_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5)

LOGIN_OUTCOMES = ("success", "invalid_credentials", "throttled", "bad_request", "unavailable", "error")
SESSION_OUTCOMES = ("valid", "invalid", "missing", "unavailable")
CACHE_KEYS = ("l1_hit", "l1_miss", "l2_hit", "l2_miss", "l2_error")
L2_REJECT_REASONS = ("signature", "expired", "malformed")
FLUSH_INTERVAL = 0.5  # seconds: the most a scrape can lag behind another worker's deferred counts


def multiprocess_dir() -> str | None:
    """The directory prometheus-client itself reads at import time (its only configuration)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


@dataclass
class Stats:
    """Plain per-process counters for the health JSON and the summary log line (cheap to read)."""

    requests: int = 0
    server_errors: int = 0
    request_seconds: float = 0.0
    logins_ok: int = 0
    logins_failed: int = 0
    db_queries: int = 0
    db_seconds: float = 0.0
    db_slow_queries: int = 0
    db_errors: int = 0
    cache: dict[str, int] = field(
        default_factory=lambda: {"l1_hit": 0, "l1_miss": 0, "l2_hit": 0, "l2_miss": 0, "l2_error": 0}
    )
    degraded: int = 0
    invalidations: int = 0
    l2_rejected: int = 0
    untrusted_private_peer_logins: int = 0
    lookups_hit: int = 0
    lookups_miss: int = 0
    sessions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SESSION_OUTCOMES, 0))

    def hit_ratio(self) -> float | None:
        """Share of logical lookups answered by any cache layer (L1 or L2) rather than PostgreSQL."""
        lookups = self.lookups_hit + self.lookups_miss
        return round(self.lookups_hit / lookups, 4) if lookups else None


class _PendingHistogram:
    """Observations of one histogram child not yet pushed to prometheus-client: the sum and the
    count per bucket (non-cumulative, as prometheus-client stores them)."""

    __slots__ = ("bounds", "child", "counts", "dirty", "total")

    def __init__(self, child: Any, bounds: tuple[float, ...]) -> None:
        self.child = child
        self.bounds = bounds  # finite upper bounds; an index past them is the +Inf bucket
        self.total = 0.0
        self.counts = [0] * (len(bounds) + 1)
        self.dirty = False

    def observe(self, value: float) -> None:
        self.total += value
        self.counts[bisect_left(self.bounds, value)] += 1  # first bucket with value <= bound
        self.dirty = True

    def flush(self) -> None:
        if not self.dirty:
            return
        # prometheus-client's own Histogram.observe does exactly these two updates, one sample at
        # a time (_sum, then the first bucket whose bound holds the value); we apply them in bulk.
        child = self.child
        child._sum.inc(self.total)
        for i, n in enumerate(self.counts):
            if n:
                child._buckets[i].inc(n)
                self.counts[i] = 0
        self.total = 0.0
        self.dirty = False


class Metrics:
    """The service's instruments, registered on a registry owned by one app instance."""

    SLOW_QUERY_SECONDS = 0.025  # the seed's alert threshold for a DB query

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiproc_dir = multiprocess_dir()
        self.stats = Stats()
        r = self.registry
        self.http = Histogram(
            "phoenix_http_request_duration_seconds",
            "HTTP request latency by route template, method and status code.",
            ("route", "method", "status"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.db_query = Histogram(
            "phoenix_db_query_duration_seconds",
            "PostgreSQL query latency by query name (connection wait included).",
            ("query",),
            buckets=DB_BUCKETS,
            registry=r,
        )
        self.cache_requests = Counter(
            "phoenix_cache_requests_total",
            "Cache lookups by layer (l1 in-process, l2 Redis) and result (hit, miss, error).",
            ("layer", "result"),
            registry=r,
        )
        self.lookups = Counter(
            "phoenix_cache_lookups_total",
            "Logical cache lookups (login record, user, session): hit = answered by L1 or L2, "
            "miss = answered by PostgreSQL. Cache hit ratio = hit / (hit + miss).",
            ("result",),
            registry=r,
        )
        self.pool = Gauge(
            "phoenix_db_pool_connections",
            "Database pool connections by state (in_use, idle, waiting = requests queued for one).",
            ("state",),
            registry=r,
            multiprocess_mode="livesum",
        )
        self.logins = Counter(
            "phoenix_login_attempts_total", "Login attempts by outcome.", ("outcome",), registry=r
        )
        self.sessions = Counter(
            "phoenix_sessions_validated_total", "Session validations by outcome.", ("outcome",), registry=r
        )
        self.degraded = Counter(
            "phoenix_degraded_operations_total",
            "Operations served without a dependency (Redis down, invalidation listener down).",
            ("component",),
            registry=r,
        )
        self.invalidations = Counter(
            "phoenix_cache_invalidations_total",
            "Cache invalidations received from PostgreSQL NOTIFY, by kind.",
            ("kind",),
            registry=r,
        )
        self.dependency_up = Gauge(
            "phoenix_dependency_up",
            "1 when this worker reaches the dependency (database, redis, listener), else 0.",
            ("dependency",),
            registry=r,
            multiprocess_mode="livemin",
        )
        self.untrusted_private_peer = Counter(
            "phoenix_login_untrusted_private_peer_total",
            "Logins whose TCP peer is a private address not in PHOENIX_TRUSTED_PROXIES: behind an "
            "ingress or proxy whose X-Forwarded-For is then ignored, everyone is throttled as one address.",
            registry=r,
        )
        self.l2_rejected = Counter(
            "phoenix_cache_l2_rejected_total",
            "L2 (Redis) values refused and looked up in PostgreSQL instead: signature missing or wrong "
            "(written by something without PHOENIX_CACHE_SIGNING_KEY, or moved to another key), "
            "signed expiry passed, or not decodable. Above zero outside a key rotation: someone else "
            "writes to Redis.",
            ("kind", "reason"),
            registry=r,
        )
        # Pre-create label sets so dashboards see zeros instead of absent series.
        for kind in ("user", "session"):
            for reason in L2_REJECT_REASONS:
                self.l2_rejected.labels(kind, reason)
        for outcome in LOGIN_OUTCOMES:
            self.logins.labels(outcome)
        for outcome in SESSION_OUTCOMES:
            self.sessions.labels(outcome)
        for layer in ("l1", "l2"):
            for result in ("hit", "miss", "error"):
                self.cache_requests.labels(layer, result)
        for component in ("redis", "listener"):
            self.degraded.labels(component)
        for state in ("in_use", "idle", "waiting"):
            self.pool.labels(state)
        self._http_pending: dict[tuple[str, str, int], _PendingHistogram] = {}
        self._http_bounds = LATENCY_BUCKETS
        # (stats getter, prometheus child, count already pushed) for every deferred counter
        self._deferred: list[tuple[Callable[[Stats], int], Any, list[int]]] = []
        for key in CACHE_KEYS:
            layer, result = key.split("_")
            child = self.cache_requests.labels(layer, result)
            self._deferred.append((_cache_count(key), child, [0]))
        for outcome in SESSION_OUTCOMES:
            child = self.sessions.labels(outcome)
            self._deferred.append((_session_count(outcome), child, [0]))
        self._deferred.append((lambda s: s.lookups_hit, self.lookups.labels("hit"), [0]))
        self._deferred.append((lambda s: s.lookups_miss, self.lookups.labels("miss"), [0]))

    # --- recording helpers (hot path: plain integer updates, pushed by flush()) ---
    def cache(self, layer: str, result: str) -> None:
        self.stats.cache[f"{layer}_{result}"] += 1

    def l1_hit(self) -> None:
        """An L1 hit that answers the lookup: cache("l1", "hit") + lookup(True) in one call."""
        s = self.stats
        s.cache["l1_hit"] += 1
        s.lookups_hit += 1

    def db(self, query: str, seconds: float, ok: bool = True) -> None:
        self.db_query.labels(query).observe(seconds)
        s = self.stats
        s.db_queries += 1
        s.db_seconds += seconds
        if seconds > self.SLOW_QUERY_SECONDS:
            s.db_slow_queries += 1
        if not ok:
            s.db_errors += 1

    def lookup(self, hit: bool) -> None:
        if hit:
            self.stats.lookups_hit += 1
        else:
            self.stats.lookups_miss += 1

    def session(self, outcome: str) -> None:
        self.stats.sessions[outcome] += 1

    def l2_reject(self, kind: str, reason: str) -> None:
        self.l2_rejected.labels(kind, reason).inc()
        self.stats.l2_rejected += 1

    def degrade(self, component: str) -> None:
        self.degraded.labels(component).inc()
        self.stats.degraded += 1

    def login(self, outcome: str) -> None:
        self.logins.labels(outcome).inc()
        if outcome == "success":
            self.stats.logins_ok += 1
        else:
            self.stats.logins_failed += 1

    def untrusted_private_peer_login(self) -> None:
        self.untrusted_private_peer.inc()
        self.stats.untrusted_private_peer_logins += 1

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        pending = self._http_pending.get(key)
        if pending is None:  # bounded: routes x known methods x statuses the app emits
            child = self.http.labels(route, method, str(status))
            pending = self._http_pending[key] = _PendingHistogram(child, self._http_bounds)
        pending.observe(seconds)
        s = self.stats
        s.requests += 1
        s.request_seconds += seconds
        if status >= 500:
            s.server_errors += 1

    def set_pool(self, in_use: int, idle: int, waiting: int) -> None:
        self.pool.labels("in_use").set(in_use)
        self.pool.labels("idle").set(idle)
        self.pool.labels("waiting").set(waiting)

    # --- deferred counts ---
    def flush(self) -> None:
        """Push the deferred hot-path counts to prometheus-client (the shared files in
        multiprocess mode). Cheap when nothing changed; called on the event loop only."""
        s = self.stats
        for get, child, pushed in self._deferred:
            value = get(s)
            if value != pushed[0]:
                child.inc(value - pushed[0])
                pushed[0] = value
        for pending in self._http_pending.values():
            pending.flush()

    # --- exposition ---
    def render(self) -> tuple[bytes, str]:
        """The text exposition: all workers' samples in multiprocess mode, else this app's registry.
        This worker's deferred counts are flushed first; other workers' are at most
        FLUSH_INTERVAL old."""
        self.flush()
        if self.multiproc_dir:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiproc_dir)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """Push the last deferred counts, then remove this worker's live gauges from the shared
        directory (multiprocess mode)."""
        self.flush()
        if self.multiproc_dir:
            multiprocess.mark_process_dead(os.getpid(), path=self.multiproc_dir)


def _cache_count(key: str) -> Callable[[Stats], int]:
    return lambda s: s.cache[key]


def _session_count(outcome: str) -> Callable[[Stats], int]:
    return lambda s: s.sessions[outcome]
