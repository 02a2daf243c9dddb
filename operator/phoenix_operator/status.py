"""Conditions and status as an API: lastTransitionTime moves only on a real transition.

Kopf has no built-in conditions (kopf#796), so this small module owns them. `set_condition`
is pure: it returns a new list and tells whether the status value flipped, which is also when
the reconciler emits a Kubernetes Event (not on every reconcile).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
MIGRATIONS_COMPLETE = "MigrationsComplete"
REDIS_READY = "RedisReady"
MONITORING_CONFIGURED = "MonitoringConfigured"
# Advisory (never part of Ready): False while spec.authService.trustedProxies is empty.
TRUSTED_PROXIES_CONFIGURED = "TrustedProxiesConfigured"
CONDITION_TYPES = (
    READY,
    PROGRESSING,
    DEGRADED,
    MIGRATIONS_COMPLETE,
    REDIS_READY,
    MONITORING_CONFIGURED,
    TRUSTED_PROXIES_CONFIGURED,
)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool | None  # None = Unknown
    reason: str
    message: str = ""

    @property
    def status_text(self) -> str:
        return "Unknown" if self.status is None else ("True" if self.status else "False")


@dataclass(frozen=True)
class Transition:
    """A condition whose status changed (old is None when it did not exist before)."""

    type: str
    old: str | None
    new: str
    reason: str
    message: str


def set_conditions(
    existing: Iterable[Mapping[str, Any]] | None,
    updates: Iterable[Condition],
    *,
    generation: int | None = None,
    now: str | None = None,
) -> tuple[list[dict[str, Any]], list[Transition]]:
    """Merge `updates` into `existing` conditions; keep lastTransitionTime unless status changes."""
    stamp = now or now_iso()
    by_type: dict[str, dict[str, Any]] = {c["type"]: dict(c) for c in (existing or []) if "type" in c}
    transitions: list[Transition] = []
    for cond in updates:
        old = by_type.get(cond.type)
        new: dict[str, Any] = {
            "type": cond.type,
            "status": cond.status_text,
            "reason": cond.reason,
            "message": cond.message,
        }
        if generation is not None:
            new["observedGeneration"] = generation
        if old is not None and old.get("status") == new["status"] and old.get("lastTransitionTime"):
            new["lastTransitionTime"] = old["lastTransitionTime"]
        else:
            new["lastTransitionTime"] = stamp
            transitions.append(
                Transition(
                    cond.type, old.get("status") if old else None, new["status"], cond.reason, cond.message
                )
            )
        by_type[cond.type] = new
    order = {t: i for i, t in enumerate(CONDITION_TYPES)}
    merged = sorted(by_type.values(), key=lambda c: (order.get(c["type"], len(order)), c["type"]))
    return merged, transitions


def get_condition(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    for cond in conditions or []:
        if cond.get("type") == type_:
            return cond
    return None
