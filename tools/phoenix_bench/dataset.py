"""The benchmark's data: its own database, seeded by the service's CLI, plus the naive path's tables.

The benchmark never writes to the `phoenix` database other engineers use: it creates
`phoenix_bench` (or `--database`), runs `phoenix-auth migrate` and `phoenix-auth seed-demo N`
against it, and reuses it on the next run when it already holds exactly N users.
The naive path gets a copy of `users` without the email index (`bench_naive_users`), so the
"before" is measured in the same run while Phoenix keeps its covering index.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from phoenix_auth.queries import SQL_AUTH_RECORD
from phoenix_testkit.databases import drop_database

from .errors import SetupError
from .naive import INSERT_SESSION_SQL, SESSIONS_TABLE, USERS_TABLE, token_hash
from .stats import summarize_ms

# The login lookup Phoenix sends (idx_users_email_auth_covering serves it).
PHOENIX_LOOKUP_SQL = SQL_AUTH_RECORD
PASSWORD_PATTERN = re.compile(r"password\W{0,3}[:=]\s*['\"]?([^\s'\"]+)", re.IGNORECASE)


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _run_cli(args: Sequence[str], env: Mapping[str, str], timeout: float) -> str:
    try:
        proc = subprocess.run(
            ["phoenix-auth", *args],
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise SetupError("phoenix-auth is not installed (bash scripts/test.sh sets up .venv)") from exc
    except subprocess.TimeoutExpired as exc:
        raise SetupError(f"phoenix-auth {' '.join(args)} did not finish within {timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise SetupError(
            f"phoenix-auth {' '.join(args)} exited {proc.returncode}:\n{(proc.stderr or proc.stdout)[-2000:]}"
        )
    return proc.stdout + "\n" + proc.stderr


def parse_seed_password(output: str) -> str:
    """The demo users' password as `phoenix-auth seed-demo` prints it."""
    match = PASSWORD_PATTERN.search(output)
    if not match:
        raise SetupError("phoenix-auth seed-demo printed no password line; pass --password")
    return match.group(1)


def recreate_database(url: str) -> None:
    name = database_name(url)
    admin = with_database(url, "postgres")
    drop_database(admin, name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def database_exists(url: str) -> bool:
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database_name(url),)).fetchone()
    return row is not None


def _meta(conn: psycopg.Connection, key: str) -> str | None:
    conn.execute("CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value text NOT NULL)")
    row = conn.execute("SELECT value FROM bench_meta WHERE key = %s", (key,)).fetchone()
    return row[0] if row else None


def _set_meta(conn: psycopg.Connection, key: str, value: str) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value text NOT NULL)")
    conn.execute(
        "INSERT INTO bench_meta (key, value) VALUES (%s, %s) "
        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        (key, value),
    )


def user_count(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM users").fetchone()
    return int(row[0]) if row else 0


def ensure_seeded(url: str, users: int, env: Mapping[str, str], password: str | None, log) -> str:
    """Make the bench database hold `users` demo users; return their password.

    seed-demo also adds the seed's test user, so the table holds users + 1 rows.
    """
    if database_exists(url):
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                stored = _meta(conn, f"seed_password_{users}")
            if stored and user_count(url) >= users:
                log(f"reusing {database_name(url)} with {users:,} users")
                _run_cli(["migrate"], env, timeout=1800)
                return password or stored
        except psycopg.Error:
            pass
    log(f"creating database {database_name(url)} and seeding {users:,} users (phoenix-auth seed-demo)")
    recreate_database(url)
    _run_cli(["migrate"], env, timeout=600)
    started = time.monotonic()
    output = _run_cli(["seed-demo", str(users)], env, timeout=3600)
    log(f"seeded {users:,} users in {time.monotonic() - started:.1f} s")
    seeded_password = password or parse_seed_password(output)
    # migrate again: index builds and ANALYZE after the bulk load, as an operator would
    out = _run_cli(["migrate"], env, timeout=3600)
    log("migrate: " + " ".join(out.split())[:200])
    with psycopg.connect(url, autocommit=True) as conn:
        _set_meta(conn, f"seed_password_{users}", seeded_password)
    return seeded_password


def prepare_naive_tables(url: str, log) -> None:
    """Copy users into a table with only a primary key (no email index); a fresh sessions table."""
    with psycopg.connect(url, autocommit=True) as conn:
        users = conn.execute("SELECT count(*) FROM users").fetchone()[0]
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (USERS_TABLE,)).fetchone()[0]
        copied = conn.execute(f"SELECT count(*) FROM {USERS_TABLE}").fetchone()[0] if exists else -1  # noqa: S608
        if copied != users:
            log(f"copying {users:,} users into {USERS_TABLE} (no email index)")
            conn.execute(f"DROP TABLE IF EXISTS {SESSIONS_TABLE}")
            conn.execute(f"DROP TABLE IF EXISTS {USERS_TABLE}")
            conn.execute(
                f"CREATE TABLE {USERS_TABLE} AS SELECT id, email, name, role, hashed_password, "  # noqa: S608
                "team_name, disabled FROM users"
            )
            conn.execute(f"ALTER TABLE {USERS_TABLE} ADD PRIMARY KEY (id)")
            conn.execute(f"ANALYZE {USERS_TABLE}")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {SESSIONS_TABLE} (token_hash bytea PRIMARY KEY, "
            "user_id text NOT NULL, expires_at timestamptz NOT NULL, revoked_at timestamptz)"
        )
        conn.execute(f"TRUNCATE {SESSIONS_TABLE}")


def email_at_rank(rank: int) -> str:
    """Email of the demo user at Zipf rank `rank` (0 = most popular): user1, user2, ... in order."""
    from phoenix_auth.seed_demo import demo_email

    return demo_email(rank + 1)


def insert_naive_sessions(url: str, user_emails: Sequence[str], ttl_s: int = 3600) -> list[str]:
    """One naive session per email, inserted directly (the naive app is ours; same sha256 hashing)."""
    tokens: list[str] = []
    expires = datetime.now(UTC) + timedelta(seconds=ttl_s)
    with psycopg.connect(url) as conn:
        ids = dict(
            conn.execute(
                f"SELECT lower(email), id FROM {USERS_TABLE} WHERE lower(email) = ANY(%s)",  # noqa: S608
                ([e.lower() for e in user_emails],),
            ).fetchall()
        )
        with conn.cursor() as cur:
            rows = []
            for email in user_emails:
                token = secrets.token_urlsafe(32)
                tokens.append(token)
                rows.append((token_hash(token), ids[email.lower()], expires))
            cur.executemany(INSERT_SESSION_SQL, rows)
    return tokens


def explain_lookup(url: str, email: str) -> str:
    """The plan of Phoenix's login lookup (must be an Index Only Scan on the covering index)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + PHOENIX_LOOKUP_SQL, (email.lower(),)).fetchall()
    return "\n".join(r[0] for r in rows)


def db_latency(url: str, emails: Sequence[str], count: int, pool_size: int = 2) -> dict[str, dict | None]:
    """Per-query latency on one pool: `SELECT 1` vs Phoenix's indexed lookup; and the naive lookup.

    `select_1` and `phoenix_lookup` each check a connection out of the same psycopg_pool pool and
    run a prepared statement (prepare_threshold=0), as the service does, so their ratio is the
    cost of the index lookup itself. `naive_lookup` opens a new connection and runs the
    index-less case-insensitive scan, timing both, as the naive app does on every login.
    """
    from psycopg_pool import ConnectionPool

    from .naive import LOGIN_SQL as NAIVE_SQL

    def timed(pool: ConnectionPool, query: str, params_of) -> list[float]:
        samples = []
        for i in range(count):
            params = params_of(i)
            t = time.perf_counter()
            with pool.connection() as conn:
                conn.execute(query, params).fetchone()
            samples.append(time.perf_counter() - t)
        return samples

    result: dict[str, dict | None] = {}
    kwargs = {"prepare_threshold": 0, "autocommit": True}
    with ConnectionPool(url, min_size=pool_size, max_size=pool_size, kwargs=kwargs, open=True) as pool:
        pool.wait(timeout=30)
        for i in range(min(500, count)):  # warm: prepare on every connection, fault index pages in
            with pool.connection() as conn:
                conn.execute("SELECT 1").fetchone()
                conn.execute(PHOENIX_LOOKUP_SQL, (emails[i % len(emails)].lower(),)).fetchone()
        result["select_1"] = _d(summarize_ms(timed(pool, "SELECT 1", lambda i: None)))
        lookup = timed(pool, PHOENIX_LOOKUP_SQL, lambda i: (emails[i % len(emails)].lower(),))
        result["phoenix_lookup"] = _d(summarize_ms(lookup))
    samples = []
    for i in range(max(5, min(20, count // 100))):
        t = time.perf_counter()
        with psycopg.connect(url) as conn:
            conn.execute(NAIVE_SQL, (emails[i % len(emails)],)).fetchone()
        samples.append(time.perf_counter() - t)
    result["naive_lookup"] = _d(summarize_ms(samples))
    return result


def _d(summary) -> dict | None:
    return summary.to_dict() if summary else None


def buffer_stats(url: str) -> tuple[int, int]:
    """(blocks hit, blocks read) of this database: PostgreSQL's own buffer-cache counters."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT blks_hit, blks_read FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)
