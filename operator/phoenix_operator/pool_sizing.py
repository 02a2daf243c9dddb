"""Per-pod connection pool sizing: what fits the database's budget at maxReplicas.

Sizing for the maximum replica count (not the current one) is the point: the HPA may scale
out at any time, and every new pod opens its pool, so the budget must already hold
`maxReplicas x perPod` connections or a scale-out would exhaust PostgreSQL. Pure functions
here; the psycopg probe that detects a live budget is in `detect_budget`, kept separate so the
arithmetic is testable without a database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from phoenix_operator.errors import BudgetDetectionFailed, PoolDoesNotFit


@dataclass(frozen=True)
class PoolSize:
    """The result of sizing: per pod, per worker process, and the numbers behind it."""

    budget: int  # total connections the database gives Phoenix (spec or detected)
    reserved: int  # kept back for admins, migrations, other tools
    max_replicas: int
    per_pod: int  # pool connections one pod may hold (all its workers together)
    per_process: int  # PHOENIX_MAX_DB_CONNECTIONS: each worker process has its own pool
    min_per_process: int  # PHOENIX_MIN_DB_CONNECTIONS

    @property
    def total_at_max(self) -> int:
        return self.per_pod * self.max_replicas


def size_pool(
    *,
    budget: int,
    reserved: int,
    max_replicas: int,
    min_per_pod: int,
    max_per_pod: int,
    workers: int = 1,
    policy: Literal["elastic", "fixed"] = "elastic",
) -> PoolSize:
    """Return the pool size, or raise PoolDoesNotFit with the numbers when the minimum cannot fit.

    per_pod = floor((budget - reserved) / max_replicas), clamped to [min_per_pod, max_per_pod];
    clamping up to min_per_pod is only allowed when it still fits, otherwise it is an error.
    Each of the pod's `workers` processes gets floor(per_pod / workers) (at least 1 is required).
    """
    if max_replicas < 1 or workers < 1 or min_per_pod < 1 or max_per_pod < min_per_pod:
        raise ValueError("max_replicas, workers, min_per_pod must be >= 1 and min_per_pod <= max_per_pod")
    usable = budget - reserved
    if usable < min_per_pod * max_replicas:
        raise PoolDoesNotFit(
            f"connection budget {budget} - reserved {reserved} = {usable} cannot give {max_replicas} "
            f"replicas the minimum pool of {min_per_pod} (needs {min_per_pod * max_replicas}); "
            "raise the budget or lower replicas.max / pool.minPerPod"
        )
    per_pod = min(max(usable // max_replicas, min_per_pod), max_per_pod)
    per_process = per_pod // workers
    if per_process < 1:
        raise PoolDoesNotFit(
            f"a pool of {per_pod} per pod cannot be split across {workers} worker processes; "
            "lower authService.workers or raise pool.minPerPod"
        )
    min_per_process = per_process if policy == "fixed" else max(1, min(per_process, min_per_pod // workers))
    return PoolSize(
        budget=budget,
        reserved=reserved,
        max_replicas=max_replicas,
        per_pod=per_pod,
        per_process=per_process,
        min_per_process=min_per_process,
    )


@dataclass(frozen=True)
class DetectedBudget:
    """What PostgreSQL told us; budget = max_connections - superuser_reserved - held_by_others."""

    max_connections: int
    superuser_reserved: int
    held_by_others: int

    @property
    def budget(self) -> int:
        return max(0, self.max_connections - self.superuser_reserved - self.held_by_others)


# Connections held by anything but Phoenix itself: the auth service sets application_name
# 'phoenix-auth…' (psycopg's default is empty); our own probe connection is excluded by pid.
DETECT_SQL = """
SELECT current_setting('max_connections')::int,
       current_setting('superuser_reserved_connections')::int,
       (SELECT count(*) FROM pg_stat_activity
         WHERE backend_type = 'client backend'
           AND pid <> pg_backend_pid()
           AND coalesce(application_name, '') NOT LIKE 'phoenix-auth%')::int
"""


async def detect_budget(database_url: str, *, connect_timeout: float = 5.0) -> DetectedBudget:
    """Connect with psycopg and read the live budget. The URL is never logged or put in errors."""
    import psycopg  # imported here: nothing connects (or loads libpq) at import time

    try:
        async with (
            await psycopg.AsyncConnection.connect(
                database_url,
                connect_timeout=max(1, int(connect_timeout)),
                application_name="phoenix-operator-probe",
            ) as conn,
            conn.cursor() as cur,
        ):
            await cur.execute(DETECT_SQL)
            row = await cur.fetchone()
    except psycopg.Error as exc:
        # psycopg messages can echo the host/user, never the password; keep only the class name.
        raise BudgetDetectionFailed(
            f"cannot read max_connections from the database ({type(exc).__name__})", delay=30.0
        ) from None
    if row is None:  # pragma: no cover - the query always returns one row
        raise BudgetDetectionFailed("database returned no row for the budget query")
    return DetectedBudget(max_connections=row[0], superuser_reserved=row[1], held_by_others=row[2])
