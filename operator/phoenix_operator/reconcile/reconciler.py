"""The one idempotent reconcile: the desired state from the spec, converged in named steps, then
the status reported.

Steps, in order (each in its own module of this package):
  spec and image allow-list → `read_database` → `converge_keys` → `size_connection_pool` →
  `converge_redis` → `converge_auth` → `converge_migrations` → `converge_monitoring` →
  `derive_conditions` → the status patch and Events (`report`).
It keeps no progress between calls (level-based): after a crash it simply runs again. Any
OperatorError stops the steps, is written into status as conditions, and is returned in the
Outcome so the object's loop can choose between a backoff retry (transient) and waiting for a
change (permanent).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from phoenix_operator import metrics
from phoenix_operator.builders.common import Owner
from phoenix_operator.errors import OperatorError, TransientError
from phoenix_operator.images import PROJECT_IMAGE_PREFIX, check_images
from phoenix_operator.kube import KubeClient
from phoenix_operator.pool_sizing import detect_budget
from phoenix_operator.reconcile.auth import Detector, converge_auth, read_database, size_connection_pool
from phoenix_operator.reconcile.conditions import derive_conditions
from phoenix_operator.reconcile.keys import converge_keys
from phoenix_operator.reconcile.migrations import converge_migrations
from phoenix_operator.reconcile.monitoring import Discovery, converge_monitoring
from phoenix_operator.reconcile.redis import converge_redis
from phoenix_operator.reconcile.report import announce, build_status
from phoenix_operator.reconcile.run import Emit, ObjectState, Run, together, version
from phoenix_operator.spec import parse_spec
from phoenix_operator.status import PROGRESSING, Condition, Transition, set_conditions
from phoenix_operator.store import Store

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What one reconcile found: the status it wrote, transitions, and the error that stopped it."""

    status: dict[str, Any]
    transitions: list[Transition] = field(default_factory=list)
    error: OperatorError | None = None


class Reconciler:
    """Holds the API client and collaborators; `reconcile(body, state)` is the whole job."""

    def __init__(
        self,
        kube: KubeClient,
        *,
        store: Store | None = None,
        detector: Detector | None = None,
        emit: Emit | None = None,
        detect_timeout: float = 5.0,
        allowed_images: Sequence[str] = (PROJECT_IMAGE_PREFIX,),
    ) -> None:
        self.kube = kube
        self.store = store or Store()
        self.allowed_images = tuple(allowed_images)
        self.discovery = Discovery(kube)

        async def detect(url: str) -> Any:
            return await detect_budget(url, connect_timeout=detect_timeout)

        self.detector: Detector = detector or detect
        self.emit: Emit = emit or (lambda _b, _t, _r, _m: None)

    async def reconcile(self, body: Mapping[str, Any], state: ObjectState | None = None) -> Outcome:
        started = time.monotonic()
        state = state if state is not None else ObjectState()
        owner = Owner.from_body(body)
        generation = int((body.get("metadata") or {}).get("generation") or 0)
        old_status = state.last_status(body)
        run = Run(owner=owner, body=body, kube=self.kube, store=self.store, state=state, emit=self.emit)
        error: OperatorError | None = None
        result = "success"
        metrics.MANAGED.labels(namespace=owner.namespace, name=owner.name).set(1)
        try:
            raw_spec = dict(body.get("spec") or {})
            if raw_spec.get("paused"):
                result = "paused"
                paused = [
                    Condition(
                        PROGRESSING, False, "Paused", "spec.paused is true: the operator changes nothing"
                    )
                ]
                return await self._report(run, generation, old_status, paused, "Paused", None)
            run.obs.spec = parse_spec(raw_spec)
            check_images(run.obs.spec, self.allowed_images)  # before anything is read or applied
            await self._converge(run)
        except OperatorError as exc:
            error = exc
            result = "transient_error" if isinstance(exc, TransientError) else "permanent_error"
            metrics.ERRORS.labels(kind=exc.reason).inc()
        except Exception as exc:  # a bug or an unexpected body: report it, retry later, never crash
            log.exception("reconcile of %s/%s failed unexpectedly", owner.namespace, owner.name)
            error = TransientError(
                f"internal error ({type(exc).__name__}); see the operator log",
                reason="InternalError",
                delay=60.0,
            )
            result = "transient_error"
            metrics.ERRORS.labels(kind=error.reason).inc()
        finally:
            metrics.RECONCILE_DURATION.observe(time.monotonic() - started)
            metrics.RECONCILES.labels(result=result).inc()
        conditions, phase = derive_conditions(run.obs, error)
        return await self._report(run, generation, old_status, conditions, phase, error)

    async def _converge(self, run: Run) -> None:
        """The steps in waves: a wave's steps are independent and run at once (`together`); an
        error stops the waves after its own, and the first error in step order is reported."""
        db_url, database = await read_database(run)
        keys, _ = await together(converge_keys(run), size_connection_pool(run, db_url, self.detector))
        redis_secret, redis_digest = await converge_redis(run)
        await together(
            converge_auth(run, database, redis_secret, redis_digest, keys),
            converge_migrations(run),
            converge_monitoring(run, self.discovery),
        )

    async def _report(
        self,
        run: Run,
        generation: int,
        old_status: dict[str, Any],
        conditions: list[Condition],
        phase: str,
        error: OperatorError | None,
    ) -> Outcome:
        merged, transitions = set_conditions(old_status.get("conditions"), conditions, generation=generation)
        status = build_status(generation, merged, run.obs, conditions, phase, error)
        if any(old_status.get(k) != v for k, v in status.items()):
            try:
                written = await self.kube.patch_status(run.owner.namespace, run.owner.name, status)
                if written:  # the next reconcile starts from this status, not an older one
                    run.state.status = dict(written.get("status") or status)
                    run.state.status_version = version(written)
            except OperatorError as exc:  # status not written: retry the whole reconcile later
                metrics.ERRORS.labels(kind=exc.reason).inc()
                error = error or exc
        for t in transitions:
            announce(self.emit, run.body, t)
        return Outcome(status=status, transitions=transitions, error=error)
