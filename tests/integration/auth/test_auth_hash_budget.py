"""One hashing budget per server, seen from outside: a real 2-worker service never runs more
verifies at once than PHOENIX_HASH_THREADS, pod-wide, and both workers' clients are served."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from authtestkit import settings_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LOGIN = "/api/auth/phoenix"


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


@pytest.mark.parametrize("budget", [1, 2])
def test_concurrent_logins_on_two_workers_never_exceed_the_servers_hash_budget(
    database_url, redis_server, start_service, make_user, budget
):
    # Admission off (it would shed most of 32 logins at once): this test is about the budget alone;
    # test_auth_admission.py floods with the default admission.
    env = settings_env(
        database_url, redis_server.url, PHOENIX_HASH_THREADS=str(budget), PHOENIX_MAX_HASH_WAIT_VERIFIES="0"
    )
    svc = start_service(env, workers=2)
    users = [make_user() for _ in range(48)]

    def login(i: int) -> int:
        user = users[i % len(users)]
        with httpx.Client(timeout=30) as fresh:  # a new connection each: they land on both workers
            return fresh.post(
                svc.base_url + LOGIN, json={"email": user.email, "password": user.password}
            ).status_code

    with ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(login, range(192)))
    assert statuses == [200] * len(statuses)

    text = httpx.get(svc.admin_url + "/metrics", timeout=5).text
    peak = _metric(text, "phoenix_hash_in_flight_peak")
    # 32 concurrent logins on 2 workers: the server's hash service was full, and never past its budget
    # (before, each worker had its own pool of the node's cores: 2 x cores at once).
    assert peak == budget, text[:3000]
    per_worker = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^phoenix_hash_jobs_total\{worker="(\d+)"\} (\S+)$', text, re.M)
    }
    print(f"budget {budget}: peak in flight {peak:.0f}, jobs per worker {per_worker}")
    assert len(per_worker) == 2, per_worker  # both workers submitted
    assert sum(per_worker.values()) >= len(statuses)
    assert min(per_worker.values()) >= 0.1 * len(statuses), per_worker  # neither worker's clients starved
