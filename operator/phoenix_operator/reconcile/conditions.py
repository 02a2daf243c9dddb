"""Status derivation: conditions and phase from what one reconcile observed (pure).

Ready is True only when every component is: the auth Deployment rolled out (observed generation,
updated and ready replicas), Redis ready and migrations complete. An error names its reason in
Ready, Progressing (transient: will retry) and Degraded (permanent: what to fix).
"""

from __future__ import annotations

from phoenix_operator.errors import OperatorError, PoolDoesNotFit, SpecInvalid, TransientError
from phoenix_operator.reconcile.run import Observed
from phoenix_operator.status import DEGRADED, PROGRESSING, READY, TRUSTED_PROXIES_CONFIGURED, Condition

PROXIES_UNSET = (
    "spec.authService.trustedProxies is empty, so X-Forwarded-For is ignored and every login counts as "
    "coming from its TCP peer: behind an ingress or load balancer that is the proxy, and all users then "
    "share one address's throttle budget (first logins from it are refused with 429 while it is over "
    "its limit). List your proxies' addresses or CIDRs there (e.g. the ingress controller pods' "
    "range). Clients that connect directly need nothing; the service counts logins from private "
    "peers outside the list in phoenix_login_untrusted_private_peer_total"
)


def derive_conditions(obs: Observed, error: OperatorError | None) -> tuple[list[Condition], str]:
    """The conditions and phase `kubectl get/describe` shows, from what the steps observed and the
    error that stopped them (pure: no API, no clock beyond the conditions' timestamps)."""
    conds: list[Condition] = []
    if obs.spec is not None:  # from the spec alone: the operator does not scrape the pods
        proxies = obs.spec.auth_service.trusted_proxies
        conds.append(
            Condition(TRUSTED_PROXIES_CONFIGURED, True, "TrustedProxiesSet", f"{len(proxies)} range(s)")
            if proxies
            else Condition(TRUSTED_PROXIES_CONFIGURED, False, "TrustedProxiesUnset", PROXIES_UNSET)
        )
    if obs.redis_ready:
        conds.append(obs.redis_ready)
    if obs.migrations_cond:
        conds.append(obs.migrations_cond)
    if obs.monitoring_cond:
        conds.append(obs.monitoring_cond)

    if error is not None:
        transient = isinstance(error, TransientError)
        reason = error.reason
        if isinstance(error, SpecInvalid):
            phase = "Invalid"
        elif isinstance(error, PoolDoesNotFit):
            phase = "Degraded"
        else:
            phase = "Progressing" if transient else "Degraded"
        conds += [
            Condition(READY, False, reason, error.message),
            Condition(
                PROGRESSING, transient, reason, "will retry" if transient else "waiting for a spec change"
            ),
            Condition(DEGRADED, not transient, reason, error.message if not transient else ""),
        ]
        return conds, phase

    dep = obs.deployment or {}
    dstatus = dep.get("status") or {}
    desired = int((dep.get("spec") or {}).get("replicas") or 0)
    ready = int(dstatus.get("readyReplicas") or 0)
    updated = int(dstatus.get("updatedReplicas") or 0)
    seen = int(dstatus.get("observedGeneration") or 0) >= int(
        (dep.get("metadata") or {}).get("generation") or 0
    )
    rolled_out = (
        seen and updated >= desired and ready >= desired and int(dstatus.get("replicas") or 0) <= desired
    )
    redis_ok = bool(obs.redis_ready and obs.redis_ready.status)
    mig_ok = bool(obs.migrations_cond and obs.migrations_cond.status)
    mig_failed = obs.migrations.get("state") == "Failed"

    waiting = []
    if not rolled_out:
        waiting.append(f"auth pods {ready}/{desired} ready")
    if not redis_ok:
        waiting.append("Redis not ready")
    if not mig_ok and not mig_failed:
        waiting.append("migrations running")
    if mig_failed:
        conds += [
            Condition(
                READY,
                False,
                "MigrationFailed",
                obs.migrations_cond.message if obs.migrations_cond else "",
            ),
            Condition(PROGRESSING, False, "MigrationFailed", "fix the cause, then change spec.migrations"),
            Condition(
                DEGRADED,
                True,
                "MigrationFailed",
                obs.migrations_cond.message if obs.migrations_cond else "",
            ),
        ]
        return conds, "Degraded"
    if waiting:
        text = "; ".join(waiting)
        conds += [
            Condition(READY, False, "Progressing", text),
            Condition(PROGRESSING, True, "RollingOut", text),
            Condition(DEGRADED, False, "AsExpected", ""),
        ]
        return conds, "Progressing"
    conds += [
        Condition(READY, True, "AllComponentsReady", f"{ready}/{desired} auth pods ready"),
        Condition(PROGRESSING, False, "Complete", "rollout complete"),
        Condition(DEGRADED, False, "AsExpected", ""),
    ]
    return conds, "Ready"
