"""Step `migrations`: the index-migration Job of the current index set; sets MigrationsComplete.

The Job's name carries the index set (and rollback flag), so a new set is a new Job and the old
ones are deleted. A Job whose migration Secret is missing is not created: it would sit in
CreateContainerConfigError until its deadline; the condition names the Secret instead.
"""

from __future__ import annotations

from phoenix_operator.builders.migration_job import (
    build_migration_job,
    job_completed_at,
    job_state,
    migration_job_name,
)
from phoenix_operator.errors import ChildConflict
from phoenix_operator.reconcile.run import Run, missing, owned_by
from phoenix_operator.spec import SecretUse
from phoenix_operator.status import MIGRATIONS_COMPLETE, Condition


async def _old_jobs(run: Run, current_name: str | None) -> list[str]:
    """Migration Jobs of this PhoenixAuth other than the current one. From the index when it is
    complete (Kopf listed every owned Job before the loop started), else one LIST."""
    if run.store.covers("batch/v1", "Job"):
        jobs = run.indexed_children("batch/v1", "Job")
    else:
        selector = f"app.kubernetes.io/instance={run.owner.name},app.kubernetes.io/component=migration"
        jobs = await run.kube.list("batch/v1", "Job", run.ns, selector)
    return [
        j["metadata"]["name"]
        for j in jobs
        if ((j.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/component") == "migration"
        and j["metadata"]["name"] != current_name
        and owned_by(j, run.owner)
    ]


async def converge_migrations(run: Run) -> None:
    ns, owner, spec, obs = run.ns, run.owner, run.spec, run.obs
    m = spec.migrations
    current_name = migration_job_name(owner, spec) if m.enabled else None
    for name in await _old_jobs(run, current_name):
        await run.kube.delete("batch/v1", "Job", ns, name)
        run.state.applied.pop(("batch/v1", "Job", name), None)
    if not m.enabled or current_name is None:
        obs.migrations = {"state": "Disabled"}
        obs.migrations_cond = Condition(
            MIGRATIONS_COMPLETE, True, "MigrationsDisabled", "spec.migrations.enabled is false"
        )
        return
    job = await run.read("batch/v1", "Job", current_name)
    if job is None and (ref := spec.database.migration_secret_ref) is not None:
        use = SecretUse("spec.database.migrationSecretRef", ref, False)
        if await run.secret_value(use) is None:
            problem = missing(ns, use)
            obs.migrations = {"indexSet": m.index_set, "rollback": m.rollback, "state": "Pending"}
            obs.migrations_cond = Condition(MIGRATIONS_COMPLETE, False, problem.reason, problem.message)
            raise problem
    if job is None:
        job = await run.apply(build_migration_job(owner, spec), None)
        run.emit(
            run.body,
            "Normal",
            "MigrationStarted",
            f"Job {current_name} runs phoenix-auth migrate "
            f"({'rollback of' if m.rollback else 'index set'} {m.index_set})",
        )
    elif not owned_by(job, owner):
        raise ChildConflict(f"Job {ns}/{current_name} exists and is not owned by this PhoenixAuth")
    state = job_state(job)
    obs.migrations = {
        "indexSet": m.index_set,
        "rollback": m.rollback,
        "state": state,
        "jobName": current_name,
    }
    if completed := job_completed_at(job):
        obs.migrations["completedAt"] = completed
    action = "rolled back" if m.rollback else "applied"
    if state == "Succeeded":
        obs.migrations_cond = Condition(
            MIGRATIONS_COMPLETE,
            True,
            "MigrationSucceeded",
            f"index set {m.index_set} {action} by Job {current_name}",
        )
    elif state == "Failed":
        obs.migrations_cond = Condition(
            MIGRATIONS_COMPLETE,
            False,
            "MigrationFailed",
            f"Job {current_name} failed; see `kubectl logs job/{current_name}`",
        )
    else:
        obs.migrations_cond = Condition(
            MIGRATIONS_COMPLETE, False, "MigrationRunning", f"Job {current_name} is {state.lower()}"
        )
