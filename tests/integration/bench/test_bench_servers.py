"""Benchmarked Phoenix servers as the harness starts them: two at once, each on its own public and
admin port, cache counters read on the admin port, the L2 (Redis) cache on, and a clear error
when a server would be measured without it."""

from __future__ import annotations

import json
import os
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from phoenix_bench import dataset, servers
from phoenix_bench.errors import BenchError
from phoenix_bench.runner import require_l2_cache, scrape_cache_counters
from phoenix_testkit.databases import drop_database

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADMIN_URL = os.environ.get("PHOENIX_TEST_PG_URL", "postgresql://phoenix:phoenix@127.0.0.1:5432/phoenix")
CHEAP_HASHING = {"PHOENIX_ARGON2_MEMORY_KIB": "8192", "PHOENIX_ARGON2_TIME_COST": "1"}


@pytest.fixture(scope="module")
def bench_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], str, Path]]:
    """`servers.app_env` on a one-user bench database and a private Redis; the users' password."""
    log_dir = tmp_path_factory.mktemp("bench-servers")
    url = dataset.with_database(ADMIN_URL, f"phoenix_t_bs_{secrets.token_hex(4)}")
    redis, redis_port = servers.start_redis(log_dir)
    try:
        env = servers.app_env(url, redis_port, 2, **CHEAP_HASHING)
        password = dataset.ensure_seeded(url, 1, env, None, lambda _: None)
        yield env, password, log_dir
    finally:
        redis.stop()
        drop_database(ADMIN_URL, dataset.database_name(url))


def _post_json(port: int, path: str, body: dict[str, str]) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 (loopback URL built here)
        return json.loads(resp.read())


def _get_status(port: int, path: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers), timeout=10
        ) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_two_servers_each_scraped_on_its_own_admin_port_share_the_l2_cache(bench_env) -> None:
    env, password, log_dir = bench_env
    first = servers.start_app("phoenix", env, log_dir)
    try:
        second = servers.start_app("phoenix", env, log_dir)
        try:
            assert len({first.port, first.admin_port, second.port, second.admin_port}) == 4
            for server in (first, second):
                require_l2_cache(server.admin_port)  # raises if the signing key did not reach it
                assert _get_status(server.port, "/metrics") == 404  # not on the public port
                assert "l1_hit" in (scrape_cache_counters(server.admin_port) or {})
            login = _post_json(
                first.port, "/api/auth/login", {"email": dataset.email_at_rank(0), "password": password}
            )
            token = login["session"]["sessionId"]
            # the second server finds the session in PostgreSQL and fills the shared L2 ...
            assert _get_status(second.port, "/api/auth/session", token) == 200
            before = scrape_cache_counters(first.admin_port) or {}
            # ... where the first one, which never validated it (its L1 misses), then finds it
            assert _get_status(first.port, "/api/auth/session", token) == 200
            after = scrape_cache_counters(first.admin_port) or {}
            assert after.get("l2_hit", 0) - before.get("l2_hit", 0) >= 1, after  # session (+ user)
        finally:
            second.stop()
    finally:
        first.stop()


def test_a_server_without_the_signing_key_is_refused_with_the_reason(bench_env) -> None:
    env, _, log_dir = bench_env
    unsigned = {k: v for k, v in env.items() if k != "PHOENIX_CACHE_SIGNING_KEY"}
    server = servers.start_app("phoenix", unsigned, log_dir)
    try:
        with pytest.raises(BenchError, match=r"L2 .*off.*PHOENIX_CACHE_SIGNING_KEY"):
            require_l2_cache(server.admin_port)
        with pytest.raises(BenchError, match="answered HTTP 404"):
            scrape_cache_counters(server.port)  # the public port has no /metrics
    finally:
        server.stop()
