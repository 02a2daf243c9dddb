"""Thin Kopf registrations: every trigger calls the one idempotent `Reconciler.reconcile()`.

- PhoenixAuth create / update / resume, and a slow timer (level-based safety net).
- on.event on owned kinds (label app.kubernetes.io/managed-by=phoenix-operator): a child
  edited, deleted, or changing status (pods becoming ready, a Job finishing) reconciles its
  owner, which puts drifted fields back and refreshes status.
No on.delete handler: the garbage collector removes the children through their ownerReferences.
Kopf still adds its finalizer because its timers always require one (see docs/operator.md).

Error policy: TransientError → kopf.TemporaryError with exponential backoff (capped);
PermanentError → already written to status as conditions; the handler returns quietly and
waits for the next spec change (or the timer) instead of retrying forever.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from phoenix_operator.builders.common import (
    GROUP,
    KIND,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    PLURAL,
    VERSION,
    stable_hash,
)
from phoenix_operator.errors import TransientError
from phoenix_operator.reconcile import Outcome, Reconciler, Serializer

log = logging.getLogger(__name__)

CHILD_KINDS: tuple[tuple[str, str, str], ...] = (
    ("apps", "v1", "deployments"),
    ("", "v1", "services"),
    ("", "v1", "configmaps"),
    ("batch", "v1", "jobs"),
    ("policy", "v1", "poddisruptionbudgets"),
    ("autoscaling", "v2", "horizontalpodautoscalers"),
    ("networking.k8s.io", "v1", "networkpolicies"),
)
MAX_BACKOFF = 300.0
# Children whose status the reconcile reads (readiness, Job outcome): every event of theirs counts.
# For the others only a change of what we apply (or a deletion) matters; their status churn
# (PDB disruptions, HPA metrics every 15 s) would otherwise trigger a full reconcile each time.
STATUS_READ_KINDS = frozenset({"Deployment", "Job"})
_VOLATILE_METADATA = ("resourceVersion", "managedFields", "generation")


def content_digest(body: Any) -> str:
    """A digest of a child without its status and bookkeeping metadata: what drift means."""
    meta = {k: v for k, v in dict(body.get("metadata") or {}).items() if k not in _VOLATILE_METADATA}
    rest = {k: v for k, v in dict(body).items() if k not in ("metadata", "status")}
    return stable_hash(meta, rest)


def backoff(retry: int, base: float) -> float:
    """Exponential backoff for Kopf retries: base, 2·base, 4·base ... capped at 5 minutes."""
    return min(MAX_BACKOFF, base * (2 ** max(0, retry)))


def settle(outcome: Outcome | None, retry: int) -> None:
    """Turn a reconcile outcome into Kopf's language (raise TemporaryError to be retried)."""
    if outcome is None or outcome.error is None:
        return
    err = outcome.error
    if isinstance(err, TransientError):
        raise kopf.TemporaryError(f"{err.reason}: {err.message}", delay=backoff(retry, err.delay))
    # Permanent: status already says what to fix; do not retry until something changes.
    log.warning("permanent error, waiting for a spec change: %s: %s", err.reason, err.message)


def _owner_name(body: Any) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if (
            ref.get("kind") == KIND
            and ref.get("apiVersion", "").startswith(f"{GROUP}/")
            and ref.get("controller")
        ):
            return str(ref["name"])
    return None


class Handlers:
    """The handler functions, bound to one Reconciler and Serializer (no module globals)."""

    def __init__(self, reconciler: Reconciler, serializer: Serializer | None = None) -> None:
        self.reconciler = reconciler
        self.serializer = serializer or Serializer()
        self._seen: dict[str, str] = {}  # child uid -> content digest (kinds not in STATUS_READ_KINDS)

    def _status_only(self, body: Any, type: str) -> bool:
        """True for an event that changed nothing but the status of a child we never read."""
        uid = body.get("metadata", {}).get("uid")
        if not uid or body.get("kind") in STATUS_READ_KINDS:
            return False
        if type == "DELETED":
            self._seen.pop(uid, None)
            return False
        digest = content_digest(body)
        previous, self._seen[uid] = self._seen.get(uid), digest
        return type == "MODIFIED" and previous == digest

    def _fresh(self, namespace: str, name: str) -> Outcome | None:
        body = self.reconciler.kube.get(f"{GROUP}/{VERSION}", KIND, namespace, name)
        if body is None or body.get("metadata", {}).get("deletionTimestamp"):
            return None  # gone or going: the garbage collector handles the children
        return self.reconciler.reconcile(body)

    def on_parent(self, body: Any, retry: int = 0, **_: Any) -> None:
        """create / update / resume / timer of a PhoenixAuth."""
        meta = body["metadata"]
        if meta.get("deletionTimestamp"):
            return
        key = f"{meta['namespace']}/{meta['name']}"
        outcome = self.serializer.run(
            key,
            lambda: self.reconciler.reconcile(body),
            lambda: self._fresh(meta["namespace"], meta["name"]),
        )
        settle(outcome, retry)

    def on_secret(self, body: Any, secret_refs: Any = None, type: str | None = None, **_: Any) -> None:
        """A Secret changed: reconcile every PhoenixAuth that references it (new hash → rollout)."""
        if type is None or secret_refs is None:
            return
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        for owner in set(secret_refs.get((namespace, name), ())):
            key = f"{namespace}/{owner}"
            try:
                self.serializer.run(
                    key,
                    lambda owner=owner: self._fresh(namespace, owner) or Outcome(status={}),
                    lambda owner=owner: self._fresh(namespace, owner),
                    wait=False,
                )
            except TransientError as exc:
                log.info("secret event reconcile of %s deferred: %s", key, exc.message)

    def on_child(self, body: Any, type: str | None = None, **_: Any) -> None:
        """Any event of an owned child: reconcile the owner (drift back, status refreshed)."""
        if type is None:  # initial listing: the parent's resume handler covers it
            if body.get("kind") not in STATUS_READ_KINDS and body.get("metadata", {}).get("uid"):
                self._seen[body["metadata"]["uid"]] = content_digest(body)
            return
        owner = _owner_name(body)
        if not owner or self._status_only(body, type):
            return
        namespace = body["metadata"]["namespace"]
        key = f"{namespace}/{owner}"
        try:
            self.serializer.run(
                key,
                lambda: self._fresh(namespace, owner) or Outcome(status={}),
                lambda: self._fresh(namespace, owner),
                wait=False,
            )
        except TransientError as exc:  # event handlers are not retried; the timer catches up
            log.info("child event reconcile of %s deferred: %s", key, exc.message)


def secret_refs_index(namespace: str, name: str, spec: Any, **_: Any) -> dict[tuple[str, str], str]:
    """Kopf index: (namespace, Secret name) → PhoenixAuth names that reference the Secret."""
    refs = {((spec.get("database") or {}).get("secretRef") or {}).get("name")}
    redis = spec.get("redis") or {}
    if redis.get("mode") == "external":
        refs.add(((redis.get("external") or {}).get("secretRef") or {}).get("name"))
    return {(namespace, ref): name for ref in refs if ref}


def register(registry: kopf.OperatorRegistry, handlers: Handlers, *, resync_seconds: float) -> None:
    """Register all handlers on `registry` (called by the CLI; nothing registers at import)."""
    resource = (GROUP, VERSION, PLURAL)
    kopf.on.resume(*resource, registry=registry, id="reconcile-resume")(handlers.on_parent)
    kopf.on.create(*resource, registry=registry, id="reconcile-create")(handlers.on_parent)
    kopf.on.update(*resource, registry=registry, id="reconcile-update")(handlers.on_parent)
    kopf.timer(
        *resource, registry=registry, id="resync", interval=resync_seconds, initial_delay=resync_seconds
    )(handlers.on_parent)
    kopf.index(*resource, registry=registry, id="secret_refs")(secret_refs_index)
    # Referenced Secrets (DB URL, external Redis URL) are not owned, so they are watched apart.
    kopf.on.event("", "v1", "secrets", registry=registry, id="referenced-secrets")(handlers.on_secret)
    for group, version, plural in CHILD_KINDS:
        kopf.on.event(
            group,
            version,
            plural,
            registry=registry,
            id=f"drift-{plural}",
            labels={LABEL_MANAGED_BY: MANAGED_BY},
        )(handlers.on_child)
