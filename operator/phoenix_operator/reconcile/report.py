"""Reporting: the status object, its one merge patch, and Events on transitions that matter.

The status is written only when a field changed, so a steady reconcile costs no request; Events
are posted on transitions only, so `kubectl describe` stays readable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from phoenix_operator.errors import OperatorError
from phoenix_operator.reconcile.run import Emit, Observed
from phoenix_operator.status import (
    DEGRADED,
    MIGRATIONS_COMPLETE,
    MONITORING_CONFIGURED,
    READY,
    REDIS_READY,
    TRUSTED_PROXIES_CONFIGURED,
    Condition,
    Transition,
)


def build_status(
    generation: int,
    merged_conditions: list[dict[str, Any]],
    obs: Observed,
    conditions: list[Condition],
    phase: str,
    error: OperatorError | None,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "phase": phase,
        "conditions": merged_conditions,
    }
    status["message"] = (
        error.message if error else next((c.message for c in conditions if c.type == READY), phase)
    )
    if obs.spec is not None:
        status["cache"] = obs.spec.cache.summary
    if obs.pool is not None:
        status["poolPerPod"] = obs.pool.per_pod
        status["poolPerProcess"] = obs.pool.per_process
        status["connectionBudget"] = obs.pool.budget
        status["connectionBudgetSource"] = obs.budget_source
    if obs.config_hash:
        status["configHash"] = obs.config_hash
    if obs.redis:
        status["redis"] = obs.redis
    if obs.migrations:
        status["migrations"] = obs.migrations
    if obs.monitoring:
        status["monitoring"] = obs.monitoring
    if obs.deployment is not None:
        desired = int((obs.deployment.get("spec") or {}).get("replicas") or 0)
        ready = int((obs.deployment.get("status") or {}).get("readyReplicas") or 0)
        status.update(replicas=desired, readyReplicas=ready, replicasSummary=f"{ready}/{desired}")
    return status


def announce(emit: Emit, body: Mapping[str, Any], t: Transition) -> None:
    """Kubernetes Events on transitions that matter to a reader of `kubectl describe`."""
    message = t.message or f"{t.type} is {t.new}"
    if t.type == READY:
        if t.new == "True":
            emit(body, "Normal", t.reason, message)
        elif t.old is not None:  # was Ready (or Unknown) and is not any more
            emit(body, "Warning", t.reason, message)
    elif t.type == DEGRADED and t.new == "True":
        emit(body, "Warning", t.reason, message)
    elif t.type in (MIGRATIONS_COMPLETE, REDIS_READY):
        if t.new == "True":
            emit(body, "Normal", t.reason, message)
        elif t.reason in ("MigrationFailed",):
            emit(body, "Warning", t.reason, message)
    elif t.type == MONITORING_CONFIGURED:
        emit(body, "Normal", t.reason, message)
    elif t.type == TRUSTED_PROXIES_CONFIGURED and t.new == "False":
        emit(body, "Warning", t.reason, message)
