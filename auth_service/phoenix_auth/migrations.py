"""`phoenix-auth migrate`: the schema plus the seed's covering indexes, built safely on a live table.

Why it is shaped like this:

* The schema is a series of ordered, named migrations (`sql/migrations/NNNN_name.sql`), each
  applied once in its own transaction and recorded (name and checksum) in a ledger table, so a
  re-run applies only the new ones and takes no lock for the old. A released migration is never
  edited (a changed checksum fails the run): a change is a new file. `0001_schema.sql` is
  idempotent and additive, so it also upgrades an existing NextAuth/Prisma-style `users` table in
  place (bcrypt hashes and all) without touching its rows.
* The indexes are built with `CREATE INDEX CONCURRENTLY` so a production table keeps taking logins
  while they build. CONCURRENTLY cannot run inside a transaction, so the connection is autocommit,
  and a failed or interrupted build leaves an INVALID index behind: every run looks for one
  (`pg_index.indisvalid`) and drops and rebuilds it.
* Two migrations at once (two Jobs, an operator plus a human) are serialised by a session-level
  PostgreSQL advisory lock; the loser waits up to a bound and then fails with `MigrationLockTimeout`.
* `lock_timeout`/`statement_timeout` bound every statement so a migration never queues forever
  behind a long transaction, which would stall every login queued behind *it*.
* The result is checked, not assumed: `EXPLAIN` of the very statements the service sends
  (imported from `queries.py`: login, session check, user by id) must read each table through its
  index, otherwise `IndexNotUsed`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

from . import queries

# Advisory-lock key of `phoenix-auth migrate` ("phoenix" in ASCII). Advisory locks are per database,
# so migrations of different databases never wait for each other.
MIGRATION_LOCK_KEY = 0x70686F656E6978

# Which schema migrations (name, checksum) this database already has.
SCHEMA_LEDGER = "phoenix_schema_migrations"
# The ledger row of the single-file schema that the first migration continues: a database whose
# row matches 0001's checksum already holds 0001.
LEGACY_SCHEMA_ROW = "schema.sql"
MIGRATION_NAME = re.compile(r"^\d{4}_[a-z0-9_]+\.sql$")

# Below this many heap pages the planner rightly prefers a sequential scan (one page read beats an
# index descent); the verification then proves the index is *usable* with seq scans disabled.
SMALL_TABLE_PAGES = 8

Log = Callable[[str], None]


# --------------------------------------------------------------------------- errors


class MigrationError(Exception):
    """Base of every failure of `phoenix-auth migrate`."""


class MigrationLockTimeout(MigrationError):
    """Another migration holds the advisory lock and did not release it in time."""


class DuplicateEmails(MigrationError):
    """Emails that differ only in case make the unique index on lower(email) impossible."""

    def __init__(self, groups: int, rows: int, examples: list[list[str]]) -> None:
        self.groups = groups
        self.rows = rows
        self.examples = examples
        example = ", ".join(repr(e) for e in examples[0]) if examples else "?"
        super().__init__(
            f"cannot build the unique index idx_users_email_auth_covering: {groups} email address(es) "
            f"appear more than once when compared case-insensitively ({rows} rows in total), "
            f"e.g. {example}. Nothing was changed; merge or rename those accounts, then run migrate again."
        )


class IndexBuildFailed(MigrationError):
    """`CREATE INDEX CONCURRENTLY` failed (timeout, lock, a concurrent duplicate, ...)."""


class IndexNotUsed(MigrationError):
    """The login query's plan does not use the covering index."""


class SchemaError(MigrationError):
    """A schema migration could not be applied to this database, or an applied one was edited."""


class UnknownIndexSet(MigrationError):
    """The requested index set is not one this version knows."""


# --------------------------------------------------------------------------- index sets


@dataclass(frozen=True)
class IndexSpec:
    """One index of an index set, with the definition PostgreSQL reports back for it."""

    name: str
    unique: bool
    key: str  # expression list inside USING btree (...)
    include: tuple[str, ...]

    @property
    def create_sql(self) -> sql.Composed:
        return sql.SQL(
            "CREATE {unique}INDEX CONCURRENTLY {name} ON users USING btree ({key}) INCLUDE ({inc})"
        ).format(
            unique=sql.SQL("UNIQUE " if self.unique else ""),
            name=sql.Identifier(self.name),
            key=sql.SQL(self.key),
            inc=sql.SQL(", ").join(sql.Identifier(c) for c in self.include),
        )

    @property
    def expected_definition(self) -> str:
        """`pg_get_indexdef` of this index, with the schema qualification removed."""
        unique = "UNIQUE " if self.unique else ""
        return (
            f"CREATE {unique}INDEX {self.name} ON users USING btree ({self.key}) "
            f"INCLUDE ({', '.join(self.include)})"
        )


AUTH_COVERING = IndexSpec(
    name="idx_users_email_auth_covering",
    unique=True,
    key="lower(email)",
    include=(
        "id",
        "email",
        "name",
        "role",
        "hashed_password",
        "team_name",
        "disabled",
        "password_changed_at",
    ),
)
SESSION_DATA = IndexSpec(
    name="idx_users_id_session_data",
    unique=False,
    key="id",
    include=("email", "name", "role", "team_name", "disabled", "password_changed_at"),
)

INDEX_SETS: dict[str, tuple[IndexSpec, ...]] = {"seed": (AUTH_COVERING, SESSION_DATA)}
DEFAULT_INDEX_SET = "seed"


@dataclass(frozen=True)
class QueryProof:
    """A statement the service sends and the index through which each table it reads must be read."""

    label: str  # as the migrate log names it
    query: str  # the statement itself, from queries.py, with its %s placeholders
    sample: tuple[object, ...]  # parameters for EXPLAIN ANALYZE; no row needs to match
    indexes: tuple[tuple[str, str], ...]  # (table, index) pairs


SESSIONS_PKEY = "phoenix_sessions_pkey"

# The hot paths: a login, a session check (cache miss) and a user reload by id.
PROOFS: tuple[QueryProof, ...] = (
    QueryProof(
        "login lookup", queries.SQL_AUTH_RECORD, ("test@example.com",), (("users", AUTH_COVERING.name),)
    ),
    QueryProof(
        "session lookup",
        queries.SQL_SESSION,
        (bytes(32),),
        (("phoenix_sessions", SESSIONS_PKEY), ("users", SESSION_DATA.name)),
    ),
    QueryProof(
        "user-by-id lookup",
        queries.SQL_USER_BY_ID,
        ("00000000-0000-0000-0000-000000000000",),
        (("users", SESSION_DATA.name),),
    ),
)


def index_set(name: str) -> tuple[IndexSpec, ...]:
    try:
        return INDEX_SETS[name]
    except KeyError:
        raise UnknownIndexSet(f"unknown index set {name!r}; known: {', '.join(sorted(INDEX_SETS))}") from None


# --------------------------------------------------------------------------- options and report


@dataclass(frozen=True)
class MigrateOptions:
    """Knobs of one run; seconds everywhere. 0 disables a timeout (PostgreSQL semantics)."""

    index_set: str = DEFAULT_INDEX_SET
    lock_timeout: float = 10.0  # per statement: table/index locks and CONCURRENTLY's waits
    statement_timeout: float = 3600.0  # per statement: an index build on a big table takes a while
    lock_wait: float | None = None  # wait for another migration's advisory lock; None = lock_timeout
    progress_interval: float = 5.0  # seconds between pg_stat_progress_create_index reports
    vacuum: bool = True  # VACUUM (ANALYZE) sets the visibility map, which index-only scans need


@dataclass(frozen=True)
class Scan:
    """One node of a plan that reads a table."""

    table: str
    node_type: str  # "Index Only Scan", "Index Scan", "Seq Scan", ...
    index_name: str | None
    index_cond: str | None  # None for a full scan of the index: no descent, every entry read
    heap_fetches: int | None

    def describe(self, with_table: bool) -> str:
        where = f" using {self.index_name}" if self.index_name else ""
        on = f" on {self.table}" if with_table else ""
        fetches = f" (heap fetches {self.heap_fetches})" if self.heap_fetches is not None else ""
        return f"{self.node_type}{where}{on}{fetches}"


@dataclass
class PlanCheck:
    """What EXPLAIN said about one statement the service sends."""

    proof: QueryProof
    scans: list[Scan]
    execution_ms: float | None
    forced: bool  # true when seq scans had to be disabled because a table is tiny
    small_tables: frozenset[str] = frozenset()  # tables below SMALL_TABLE_PAGES
    plan: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def query(self) -> str:
        return self.proof.query

    def scan_of(self, table: str) -> Scan | None:
        return next((scan for scan in self.scans if scan.table == table), None)

    def missing(self) -> list[str]:
        """`table via index` for each table not looked up through its index (empty when the proof
        holds). A full scan of the index (no Index Cond) is not a lookup, except of a table too small
        for the planner to descend an index at all (then the plan only proves the index usable)."""
        out = []
        for table, index in self.proof.indexes:
            scan = self.scan_of(table)
            lookup = scan is not None and scan.index_name == index
            if lookup and scan is not None and scan.index_cond is None:
                lookup = self.forced and table in self.small_tables
            if not lookup:
                out.append(f"{table} via {index}")
        return out

    def index_only(self) -> bool:
        return all(scan.node_type == "Index Only Scan" for scan in self.scans)

    def describe(self) -> str:
        parts = [scan.describe(with_table=len(self.scans) > 1) for scan in self.scans]
        extra = []
        if self.execution_ms is not None:
            extra.append(f"execution {self.execution_ms:.3f} ms")
        if self.forced:
            extra.append("seq scan disabled: table too small for the planner to prefer an index")
        return "; ".join(parts) + (f" ({', '.join(extra)})" if extra else "")


@dataclass
class MigrateReport:
    built: list[str] = field(default_factory=list)
    rebuilt_invalid: list[str] = field(default_factory=list)
    already_valid: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    plans: list[PlanCheck] = field(default_factory=list)


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class SchemaMigration:
    """One file of sql/migrations: applied once, in name order."""

    name: str  # NNNN_what.sql
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def schema_migrations() -> list[SchemaMigration]:
    """The package's schema migrations, in the order they apply."""
    folder = resources.files("phoenix_auth").joinpath("sql/migrations")
    out = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        if not MIGRATION_NAME.match(entry.name):
            raise SchemaError(f"sql/migrations/{entry.name}: a migration is named NNNN_name.sql")
        out.append(SchemaMigration(entry.name, entry.read_text(encoding="utf-8")))
    return out


class _Clock:
    """Prints each step with the time since start and its own duration."""

    def __init__(self, log: Log) -> None:
        self._log = log
        self._t0 = time.monotonic()

    def say(self, message: str) -> None:
        self._log(f"[{time.monotonic() - self._t0:7.2f}s] {message}")

    def step(self, title: str) -> _Step:
        return _Step(self, title)


class _Step:
    def __init__(self, clock: _Clock, title: str) -> None:
        self._clock = clock
        self._title = title
        self._start = 0.0

    def __enter__(self) -> _Step:
        self._start = time.monotonic()
        self._clock.say(f"{self._title} ...")
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        took = time.monotonic() - self._start
        self._clock.say(f"{self._title}: {'done' if exc_type is None else 'FAILED'} ({took:.2f}s)")


def _ms(seconds: float) -> str:
    return f"{int(seconds * 1000)}ms" if seconds > 0 else "0"


def _normalise_indexdef(definition: str) -> str:
    # pg_get_indexdef qualifies the table with its schema ("ON public.users"); compare without it.
    return re.sub(r" ON (?:\"?[\w$]+\"?\.)?users ", " ON users ", definition)


@dataclass(frozen=True)
class IndexState:
    valid: bool
    ready: bool
    definition: str


def index_state(conn: psycopg.Connection, name: str) -> IndexState | None:
    """The state of index `name` in the current schema, or None when it does not exist."""
    row = conn.execute(
        """
        SELECT i.indisvalid, i.indisready, pg_get_indexdef(i.indexrelid)
        FROM pg_class c
        JOIN pg_index i ON i.indexrelid = c.oid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relname = %s AND n.nspname = current_schema()
        """,
        (name,),
    ).fetchone()
    if row is None:
        return None
    return IndexState(valid=row[0], ready=row[1], definition=_normalise_indexdef(row[2]))


def find_case_duplicates(conn: psycopg.Connection, limit: int = 3) -> tuple[int, int, list[list[str]]]:
    """(groups, rows, examples) of emails equal under lower(); (0, 0, []) when there are none."""
    rows = conn.execute(
        """
        SELECT count(*) OVER () AS groups, sum(n) OVER () AS total, emails
        FROM (
            SELECT count(*) AS n, array_agg(email ORDER BY email) AS emails
            FROM users WHERE email IS NOT NULL
            GROUP BY lower(email) HAVING count(*) > 1
        ) d
        ORDER BY emails[1]
        LIMIT %s
        """,
        (limit,),
    ).fetchall()
    if not rows:
        return 0, 0, []
    return int(rows[0][0]), int(rows[0][1]), [list(r[2]) for r in rows]


def _walk(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _walk(child)


def _scans(plan: dict[str, Any]) -> Iterator[Scan]:
    """The nodes that read a table, in plan order (an index node names its table too)."""
    for node in _walk(plan):
        table = node.get("Relation Name")
        if table:
            yield Scan(
                table=table,
                node_type=node.get("Node Type", "?"),
                index_name=node.get("Index Name"),
                index_cond=node.get("Index Cond"),
                heap_fetches=node.get("Heap Fetches"),
            )


# --------------------------------------------------------------------------- the migrator


class Migrator:
    """Runs one migrate or rollback on one autocommit connection it does not own."""

    def __init__(
        self,
        conn: psycopg.Connection,
        options: MigrateOptions | None = None,
        log: Log = print,
        conninfo: str | None = None,
    ) -> None:
        if not conn.autocommit:
            raise ValueError("Migrator needs an autocommit connection (CREATE INDEX CONCURRENTLY)")
        self.conn = conn
        self.options = options or MigrateOptions()
        self.indexes = index_set(self.options.index_set)
        self._clock = _Clock(log)
        # A second connection watches pg_stat_progress_create_index while the first one builds.
        self._conninfo = conninfo

    # ---- public entry points

    def migrate(self) -> MigrateReport:
        report = MigrateReport()
        self._configure_session()
        with self._advisory_lock():
            self._apply_schema()
            self._ensure_indexes(report)
            self._analyze()
            report.plans = self.verify()
        return report

    def rollback(self) -> MigrateReport:
        report = MigrateReport()
        self._configure_session()
        with self._advisory_lock():
            for spec in self.indexes:
                existed = index_state(self.conn, spec.name) is not None
                with self._clock.step(f"DROP INDEX CONCURRENTLY IF EXISTS {spec.name}"):
                    self._drop(spec)
                if existed:
                    report.dropped.append(spec.name)
                else:
                    self._clock.say(f"{spec.name} did not exist")
        self._clock.say(f"rollback complete: dropped {', '.join(report.dropped) or 'nothing'}")
        return report

    def verify(self, proofs: tuple[QueryProof, ...] | None = None) -> list[PlanCheck]:
        """EXPLAIN each statement the service sends on a hot path (PROOFS unless given); IndexNotUsed
        unless each table is looked up through its index."""
        checks = []
        for proof in PROOFS if proofs is None else proofs:
            with self._clock.step(f"EXPLAIN the {proof.label}"):
                check = self._explain(proof)
            self._clock.say(f"{proof.label} plan: {check.describe()}")
            missing = check.missing()
            if missing:
                raise IndexNotUsed(
                    f"the {proof.label} does not read {', '.join(missing)}: plan is {check.describe()}\n"
                    f"statement: {proof.query}\n" + json.dumps(check.plan, indent=2)
                )
            uses = ", ".join(index for _, index in proof.indexes)
            if check.index_only():
                self._clock.say(f"OK: {proof.label} is an Index Only Scan using {uses}")
            else:
                self._clock.say(
                    f"OK (not index-only yet): {proof.label} uses {uses} ({check.describe()}); "
                    "it becomes index-only once VACUUM has marked the pages all-visible"
                )
            checks.append(check)
        return checks

    # ---- steps

    def _configure_session(self) -> None:
        self.conn.execute(
            sql.SQL(
                "SET application_name = 'phoenix-auth migrate'; "
                "SET lock_timeout = {}; SET statement_timeout = {}"
            ).format(
                sql.Literal(_ms(self.options.lock_timeout)), sql.Literal(_ms(self.options.statement_timeout))
            )
        )
        self._clock.say(
            f"database {self.conn.info.dbname} on {self.conn.info.host}:{self.conn.info.port}; "
            f"index set {self.options.index_set!r}; lock_timeout {self.options.lock_timeout:g}s, "
            f"statement_timeout {self.options.statement_timeout:g}s"
        )

    def _advisory_lock(self) -> _AdvisoryLock:
        wait = self.options.lock_timeout if self.options.lock_wait is None else self.options.lock_wait
        return _AdvisoryLock(self.conn, wait, self._clock)

    def _apply_schema(self) -> None:
        """Apply the schema migrations this database does not have yet, each in its own transaction.

        Re-running one would be harmless but not free: ALTER TABLE and CREATE TRIGGER take an
        ACCESS EXCLUSIVE lock on `users`, which on a busy table queues behind long readers and
        blocks logins behind itself. The ledger keeps a re-run of migrate lock-free.
        """
        self.conn.execute(
            f"CREATE TABLE IF NOT EXISTS {SCHEMA_LEDGER} ("
            " name text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        migrations = schema_migrations()
        applied = self._applied()
        if migrations and migrations[0].name not in applied:
            legacy = applied.get(LEGACY_SCHEMA_ROW)
            if legacy is not None and legacy[0] == migrations[0].checksum:
                self._record(migrations[0])
                applied[migrations[0].name] = legacy
        for migration in migrations:
            done = applied.get(migration.name)
            if done is None:
                self._apply(migration)
            elif done[0] != migration.checksum:
                raise SchemaError(
                    f"{migration.name} was applied on {done[1]:%Y-%m-%d %H:%M:%S %Z} with other contents: "
                    "a released migration is never edited; put the change in a new migration"
                )
            else:
                self._clock.say(f"{migration.name}: applied {done[1]:%Y-%m-%d %H:%M:%S %Z}, skipped")
        rows = self.conn.execute(
            "SELECT reltuples::bigint, relpages FROM pg_class WHERE oid = 'users'::regclass"
        ).fetchone()
        if rows is not None:
            estimate = "unknown (never analysed)" if rows[0] < 0 else f"~{rows[0]}"
            self._clock.say(f"users table: {estimate} rows, {rows[1]} pages")

    def _applied(self) -> dict[str, tuple[str, Any]]:
        """name -> (checksum, applied_at) of the ledger; empty when the tables themselves are gone
        (every migration is idempotent, so they are simply applied again)."""
        present = self.conn.execute(
            "SELECT to_regclass('users') IS NOT NULL AND to_regclass('phoenix_sessions') IS NOT NULL"
        ).fetchone()
        if present is None or not present[0]:
            return {}
        rows = self.conn.execute(
            f"SELECT name, checksum, applied_at FROM {SCHEMA_LEDGER}"  # noqa: S608 - constant table name
        ).fetchall()
        return {row[0]: (row[1], row[2]) for row in rows}

    def _record(self, migration: SchemaMigration) -> None:
        self.conn.execute(
            f"INSERT INTO {SCHEMA_LEDGER} (name, checksum) VALUES (%s, %s) "  # noqa: S608 - constant
            "ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()",
            (migration.name, migration.checksum),
        )

    def _apply(self, migration: SchemaMigration) -> None:
        with self._clock.step(f"apply {migration.name}"):
            try:
                with self.conn.transaction():
                    self.conn.execute(migration.sql.encode("utf-8"))  # trusted file, no params
                    self._record(migration)
            except psycopg.errors.LockNotAvailable as exc:
                raise MigrationLockTimeout(
                    f"{migration.name} could not lock its table within {self.options.lock_timeout:g}s "
                    f"(a long transaction holds it); retry, or raise --lock-timeout: {exc}"
                ) from exc
            except psycopg.Error as exc:
                raise SchemaError(f"{migration.name} failed: {exc}") from exc

    def _ensure_indexes(self, report: MigrateReport) -> None:
        plan: list[tuple[IndexSpec, str]] = []  # (spec, why it must be (re)built)
        for spec in self.indexes:
            state = index_state(self.conn, spec.name)
            if state is None:
                plan.append((spec, "missing"))
            elif not state.valid:
                self._clock.say(
                    f"{spec.name} is INVALID (left by an interrupted or failed build; indisvalid = false): "
                    "it will be dropped and rebuilt"
                )
                plan.append((spec, "invalid"))
            elif state.definition != spec.expected_definition:
                self._clock.say(
                    f"{spec.name} exists but differs from the seed's definition; it will be rebuilt.\n"
                    f"    found:    {state.definition}\n    expected: {spec.expected_definition}"
                )
                plan.append((spec, "different"))
            else:
                self._clock.say(f"{spec.name}: present and valid, nothing to do")
                report.already_valid.append(spec.name)

        # Duplicate check BEFORE building anything: a failed unique build would only leave an
        # INVALID index (and block inserts of the duplicate values) for nothing.
        if any(spec.unique for spec, _ in plan):
            with self._clock.step("check for emails that differ only in case"):
                groups, rows, examples = find_case_duplicates(self.conn)
            if groups:
                raise DuplicateEmails(groups, rows, examples)

        for spec, why in plan:
            if why != "missing":
                with self._clock.step(f"DROP INDEX CONCURRENTLY {spec.name} ({why})"):
                    self._drop(spec)
            self._build(spec)
            (report.rebuilt_invalid if why == "invalid" else report.built).append(spec.name)

    def _build(self, spec: IndexSpec) -> None:
        title = f"CREATE {'UNIQUE ' if spec.unique else ''}INDEX CONCURRENTLY {spec.name}"
        pid = self.conn.info.backend_pid
        watcher = _ProgressWatcher(self._conninfo, pid, self.options.progress_interval, self._clock)
        with self._clock.step(title), watcher:
            try:
                self.conn.execute(spec.create_sql)
            except psycopg.Error as exc:
                self._cleanup_failed_build(spec)
                raise self._build_error(spec, exc) from exc
        state = index_state(self.conn, spec.name)
        if state is None or not state.valid:
            raise IndexBuildFailed(f"{spec.name} is not valid after its build")

    def _build_error(self, spec: IndexSpec, exc: psycopg.Error) -> MigrationError:
        if isinstance(exc, psycopg.errors.LockNotAvailable):
            return MigrationLockTimeout(
                f"building {spec.name} waited longer than lock_timeout {self.options.lock_timeout:g}s "
                "for other transactions; retry, or raise --lock-timeout"
            )
        if isinstance(exc, psycopg.errors.QueryCanceled):
            return IndexBuildFailed(
                f"building {spec.name} was cancelled "
                f"(statement_timeout {self.options.statement_timeout:g}s?): {exc}"
            )
        if isinstance(exc, psycopg.errors.UniqueViolation):
            return IndexBuildFailed(
                f"building {spec.name} failed: a case-duplicate email was written during the build: {exc}"
            )
        return IndexBuildFailed(f"building {spec.name} failed: {exc}")

    def _cleanup_failed_build(self, spec: IndexSpec) -> None:
        """A failed CONCURRENTLY build leaves an INVALID index; an invalid unique index still
        rejects inserts, so remove it now (the next run would otherwise do it)."""
        try:
            state = index_state(self.conn, spec.name)
            if state is not None and not state.valid:
                self._drop(spec)
                self._clock.say(f"dropped the INVALID {spec.name} left by the failed build")
        except psycopg.Error as exc:
            self._clock.say(f"could not drop the INVALID {spec.name} ({exc}); the next migrate will")

    def _drop(self, spec: IndexSpec) -> None:
        self.conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(spec.name)))

    def _analyze(self) -> None:
        if self.options.vacuum:
            with self._clock.step(
                "VACUUM (ANALYZE) users (statistics + visibility map for index-only scans)"
            ):
                self.conn.execute("VACUUM (ANALYZE) users")
        else:
            with self._clock.step("ANALYZE users"):
                self.conn.execute("ANALYZE users")

    def _explain(self, proof: QueryProof) -> PlanCheck:
        """EXPLAIN ANALYZE the statement with its parameters bound, as the service sends it."""
        tables = [table for table, _ in proof.indexes]
        rows = self.conn.execute(
            "SELECT relname FROM pg_class WHERE oid = ANY(%s::regclass[]) AND relpages < %s",
            (tables, SMALL_TABLE_PAGES),
        ).fetchall()
        small = frozenset(row[0] for row in rows)
        check = self._plan(proof, forced=False, small=small)
        if check.missing() and small:
            # Tiny table: a seq scan of one page is the right plan. Prove the index is usable.
            with self.conn.transaction():
                self.conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
                check = self._plan(proof, forced=True, small=small)
        return check

    def _plan(self, proof: QueryProof, forced: bool, small: frozenset[str]) -> PlanCheck:
        explain = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {}").format(sql.SQL(proof.query))
        row = self.conn.execute(explain, proof.sample).fetchone()
        assert row is not None
        doc = row[0] if isinstance(row[0], list) else json.loads(row[0])
        top = doc[0]
        return PlanCheck(
            proof=proof,
            scans=list(_scans(top["Plan"])),
            execution_ms=top.get("Execution Time"),
            forced=forced,
            small_tables=small,
            plan=top,
        )


class _AdvisoryLock:
    """Session advisory lock, polled so the wait is bounded and the holder can be named."""

    def __init__(self, conn: psycopg.Connection, wait: float, clock: _Clock) -> None:
        self._conn = conn
        self._wait = wait
        self._clock = clock

    def __enter__(self) -> _AdvisoryLock:
        deadline = time.monotonic() + self._wait
        announced = False
        while True:
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (MIGRATION_LOCK_KEY,)).fetchone()
            if row and row[0]:
                self._clock.say("migration lock acquired")
                return self
            holder = self._holder()
            if time.monotonic() >= deadline:
                raise MigrationLockTimeout(
                    f"another phoenix-auth migrate is running on this database (advisory lock "
                    f"{MIGRATION_LOCK_KEY} held by {holder}); gave up after {self._wait:g}s. "
                    "Wait for it to finish, or retry with a longer --lock-wait."
                )
            if not announced:
                self._clock.say(f"waiting up to {self._wait:g}s for the migration lock held by {holder}")
                announced = True
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))

    def _holder(self) -> str:
        row = self._conn.execute(
            """
            SELECT l.pid, coalesce(a.application_name, '')
            FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted AND l.database = (
                SELECT oid FROM pg_database WHERE datname = current_database())
              AND ((l.classid::bigint << 32) | l.objid::bigint) = %s
            LIMIT 1
            """,
            (MIGRATION_LOCK_KEY,),
        ).fetchone()
        if row is None:
            return "another session"
        return f"pid {row[0]}" + (f" ({row[1]})" if row[1] else "")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        with contextlib.suppress(psycopg.Error):  # the connection is gone; so is the session lock
            self._conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


class _ProgressWatcher:
    """Polls pg_stat_progress_create_index from a second connection while an index builds.

    Silent for builds shorter than one interval (small tables), so the common case stays quiet.
    """

    def __init__(self, conninfo: str | None, pid: int, interval: float, clock: _Clock) -> None:
        self._conninfo = conninfo
        self._pid = pid
        self._interval = interval
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _ProgressWatcher:
        if self._conninfo and self._interval > 0:
            self._thread = threading.Thread(target=self._run, name="index-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        conninfo = self._conninfo
        if conninfo is None or self._stop.wait(self._interval):
            return
        try:
            with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as watcher:
                while True:
                    row = watcher.execute(
                        """
                        SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total,
                               lockers_done, lockers_total
                        FROM pg_stat_progress_create_index WHERE pid = %s
                        """,
                        (self._pid,),
                    ).fetchone()
                    if row is not None:
                        phase, bd, bt, td, tt, ld, lt = row
                        parts = [f"phase: {phase}"]
                        if bt:
                            parts.append(f"blocks {bd}/{bt} ({100.0 * bd / bt:.0f}%)")
                        if tt:
                            parts.append(f"tuples {td}/{tt}")
                        if lt:
                            parts.append(f"waiting for lockers {ld}/{lt}")
                        self._clock.say("  progress: " + ", ".join(parts))
                    if self._stop.wait(self._interval):
                        return
        except psycopg.Error as exc:
            self._clock.say(f"  (progress unavailable: {exc})")


# --------------------------------------------------------------------------- entry points


def summary(report: MigrateReport) -> str:
    """One line saying what a migrate or rollback did."""
    if report.dropped:
        return f"rollback complete: dropped {', '.join(report.dropped)}"
    parts = [
        f"built {', '.join(report.built)}" if report.built else "",
        f"rebuilt INVALID {', '.join(report.rebuilt_invalid)}" if report.rebuilt_invalid else "",
        f"already valid {', '.join(report.already_valid)}" if report.already_valid else "",
    ]
    return "migrate complete: " + "; ".join(p for p in parts if p)


def run_migrate(conninfo: str, options: MigrateOptions | None = None, log: Log = print) -> MigrateReport:
    """Connect, migrate, verify. Raises a MigrationError subclass on failure."""
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        report = Migrator(conn, options, log, conninfo=conninfo).migrate()
    log(summary(report))
    return report


def run_rollback(conninfo: str, options: MigrateOptions | None = None, log: Log = print) -> MigrateReport:
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        return Migrator(conn, options, log, conninfo=conninfo).rollback()
