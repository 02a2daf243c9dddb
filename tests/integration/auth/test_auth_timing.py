"""Enumeration by timing with legacy hashes (security review, issue 12, finding 5).

Right after adopting a NextAuth table most real accounts hold bcrypt hashes (cost 10: ~4x our
argon2id verify) or argon2 hashes made with other parameters, while an unknown email costs one
dummy verify with ours. A failed login must take as long for all of them. The table is this
test's own (migrated like the shared one), so the slow hashes it plants do not slow other tests.
"""

from __future__ import annotations

import random
import secrets
import statistics
import time
import uuid
from collections.abc import Iterator

import bcrypt
import psycopg
import pytest
from argon2.low_level import Type, hash_secret
from authtestkit import ADMIN_URL, TimingRounds, migrated_database, running_app

pytestmark = pytest.mark.integration

LOGIN = "/api/auth/phoenix"
THRESHOLD_MS = 3.0


@pytest.fixture
def legacy_database() -> Iterator[str]:
    with migrated_database(ADMIN_URL) as url:
        yield url


def _argon2(password: str, memory_kib: int, passes: int) -> str:
    return hash_secret(
        password.encode(), secrets.token_bytes(16), passes, memory_kib, 1, 32, Type.ID
    ).decode()


KINDS = {
    "bcrypt cost 10": lambda pw: bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=10)).decode(),
    "argon2id m=32 MiB t=3 (slower params)": lambda pw: _argon2(pw, 32 * 1024, 3),
    "argon2id m=8 MiB t=1 (faster params)": lambda pw: _argon2(pw, 8 * 1024, 1),
}


async def test_no_timing_gap_between_unknown_emails_and_bcrypt_or_old_parameter_accounts(
    make_settings, legacy_database
):
    """>= 60 rounds of one try per kind in random order, production argon2id parameters, each
    kind's gap from an unknown email judged as the median of the per-round differences
    (`TimingRounds`); as in the test of current-parameter accounts (test_auth_login), 60 more
    rounds are added only when the first 60 are inconclusive, and all of them are judged."""
    emails: dict[str, list[str]] = {}
    with psycopg.connect(legacy_database, autocommit=True) as conn:
        for kind, make_hash in KINDS.items():
            emails[kind] = []
            for i in range(4):
                email = f"legacy-{i}-{uuid.uuid4().hex[:8]}@example.com"
                conn.execute(
                    "INSERT INTO users (email, hashed_password) VALUES (%s, %s)",
                    (email, make_hash("right-password")),
                )
                emails[kind].append(email)
    settings = make_settings(
        DATABASE_URL=legacy_database,
        argon2_memory_kib=19 * 1024,
        argon2_time_cost=2,
        throttle_free_failures=49,
        throttle_lockout_failures=99,
        throttle_ip_free_failures=100_000,
    )
    async with running_app(settings) as (app, client):
        rounds = TimingRounds(*KINDS, "unknown")

        async def timed(email: str) -> float:
            start = time.perf_counter()
            r = await client.post(LOGIN, json={"email": email, "password": "wrong-password"})
            elapsed = time.perf_counter() - start
            assert r.status_code == 401, r.text
            return elapsed

        for round_ in range(2):
            for i in range(60):
                order = [(kind, emails[kind][i % 4]) for kind in KINDS]
                order.append(("unknown", f"ghost-{round_}-{i}-{time.time_ns()}@example.com"))
                random.shuffle(order)
                for kind, email in order:
                    rounds.add(kind, await timed(email))
            if max(rounds.gaps_ms("unknown").values()) < THRESHOLD_MS:
                break
        gaps = {kind: round(gap, 2) for kind, gap in rounds.gaps_ms("unknown").items()}
        report = {"median ms": rounds.medians_ms(), "gap from unknown ms": gaps}
        print(f"failed logins over {len(rounds.times['unknown'])} rounds: {report}")
        assert max(gaps.values()) < THRESHOLD_MS, report
        print(f"hash kinds present: {sorted(app.resources.hasher.present_kinds)}")
        # The bcrypt verify really ran (cost 10 is several times our argon2id here).
        assert statistics.median(rounds.times["bcrypt cost 10"]) > 0.03, report
