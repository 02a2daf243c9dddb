"""The migration Job: `phoenix-auth migrate` with the auth image, named by a hash of what it does.

Naming the Job `<name>-migrate-<hash>` makes "run when the migration set changes" a property of
the name: the same set → same Job (already done, nothing to do); a new set, rollback or image →
a new Job. Jobs are immutable, so a new name is also the only way to change one.

With `spec.database.migrationSecretRef` the Job connects as that role (the schema's owner), while
the auth pods keep `secretRef`'s runtime role, which then cannot change the schema (drop the
password-change trigger, say) even from a compromised pod.
"""

from __future__ import annotations

from typing import Any

from phoenix_operator.builders.common import (
    ANNOTATION_MIGRATION_HASH,
    Owner,
    container_security_context,
    labels,
    metadata,
    pod_security_context,
    stable_hash,
)
from phoenix_operator.builders.deployment import secret_env
from phoenix_operator.spec import PhoenixAuthSpec


def migration_hash(spec: PhoenixAuthSpec) -> str:
    """What the Job does: index set, rollback, image, and which Secret key it connects with (so
    setting `migrationSecretRef` after a Job failed for lack of privileges runs a new one)."""
    m = spec.migrations
    parts: list[object] = [m.index_set, m.rollback, spec.auth_service.image]
    if (ref := spec.database.migration_secret_ref) is not None:
        parts += [ref.name, ref.key]
    return stable_hash(*parts, length=10)


def migration_secret(spec: PhoenixAuthSpec) -> tuple[str, str]:
    """(Secret, key) of the migration's DATABASE_URL: the owner role's when given, else the service's."""
    ref = spec.database.migration_secret_ref or spec.database.secret_ref
    return ref.name, ref.key


def migration_job_name(owner: Owner, spec: PhoenixAuthSpec) -> str:
    return f"{owner.name}-migrate-{migration_hash(spec)}"


def migration_command(spec: PhoenixAuthSpec) -> list[str]:
    cmd = ["phoenix-auth", "migrate", "--index-set", spec.migrations.index_set]
    if spec.migrations.rollback:
        cmd.append("--rollback")
    return cmd


def build_migration_job(owner: Owner, spec: PhoenixAuthSpec) -> dict[str, Any]:
    m = spec.migrations
    secret, key = migration_secret(spec)
    digest = migration_hash(spec)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(
            owner,
            migration_job_name(owner, spec),
            "migration",
            annotations={ANNOTATION_MIGRATION_HASH: digest},
        ),
        "spec": {
            "backoffLimit": m.backoff_limit,
            "activeDeadlineSeconds": m.active_deadline_seconds,
            "template": {
                "metadata": {"labels": labels(owner, "migration")},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(),
                    "containers": [
                        {
                            "name": "migrate",
                            "image": spec.auth_service.image,
                            "imagePullPolicy": spec.auth_service.image_pull_policy,
                            "command": migration_command(spec),
                            "env": [secret_env("DATABASE_URL", secret, key)],
                            "resources": {
                                "requests": {"cpu": "50m", "memory": "64Mi"},
                                "limits": {"memory": "256Mi"},
                            },
                            "securityContext": container_security_context(),
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
                        }
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                },
            },
        },
    }


def job_state(job: dict[str, Any] | None) -> str:
    """Pending | Running | Succeeded | Failed from a Job's status conditions."""
    if not job:
        return "Pending"
    status = job.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") in ("Complete", "SuccessCriteriaMet"):
            return "Succeeded"
        if cond.get("type") in ("Failed", "FailureTarget"):
            return "Failed"
    if status.get("active"):
        return "Running"
    return "Pending"


def job_completed_at(job: dict[str, Any] | None) -> str | None:
    if not job:
        return None
    return (job.get("status") or {}).get("completionTime")
