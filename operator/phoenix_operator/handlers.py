"""Kopf registrations: one daemon per PhoenixAuth, indexes, and event handlers that only wake.

- `reconcile` daemon on PhoenixAuth (daemon.Loops.run): the one place that reconciles.
- Indexes: `children` (every object the operator manages, by owner; label
  app.kubernetes.io/managed-by=phoenix-operator), `secrets` (Secrets with the watched label
  `auth.phoenix.dev/watched=true`, selected server-side: referenced ones and ours) and
  `secret_refs` (Secret → the PhoenixAuths that reference it). Reconciles read children and
  Secrets from them (store.Store), not from the API.
- on.event handlers wake the owner's loop, and only when something it reads changed: a spec
  change (generation), a child's content (drift) or the status fields it reads (Deployment
  readiness, Job completion), a child deleted, a watched Secret's data. HPA metrics every 15 s,
  PDB disruption counts, a Deployment's condition timestamps wake nobody.
No on.delete handler: the garbage collector removes the children through their ownerReferences.
Kopf adds its finalizer to stop the daemon before the object goes (see docs/operator.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from phoenix_operator.builders.common import (
    GROUP,
    LABEL_MANAGED_BY,
    LABEL_WATCHED_SECRET,
    MANAGED_BY,
    PLURAL,
    VERSION,
    WATCHED_SECRET,
    stable_hash,
)
from phoenix_operator.daemon import Loops, Wakeups
from phoenix_operator.errors import SpecInvalid
from phoenix_operator.reconcile import version as resource_version
from phoenix_operator.spec import parse_spec, secret_uses
from phoenix_operator.store import (
    Entry,
    OwnerKey,
    Store,
    children_index,
    controller_owner,
    secrets_index,
)

# (group, version, plural, kind) of every child kind Kopf watches for the operator.
CHILD_KINDS: tuple[tuple[str, str, str, str], ...] = (
    ("apps", "v1", "deployments", "Deployment"),
    ("", "v1", "services", "Service"),
    ("", "v1", "configmaps", "ConfigMap"),
    ("batch", "v1", "jobs", "Job"),
    ("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget"),
    ("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler"),
    ("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"),
)
SECRETS = ("", "v1", "secrets")
# Server-side label selectors of Kopf's watches (settings.watching.label_selectors at start-up).
WATCH_LABEL_SELECTORS: dict[tuple[str, str, str], str] = {SECRETS: f"{LABEL_WATCHED_SECRET}={WATCHED_SECRET}"}
_SEEN = "phoenix_seen"  # key in a watched object's Kopf memo: what its last wake was about
_GONE = "deleted"  # the fingerprint of a DELETED event


def child_api_kinds() -> frozenset[tuple[str, str]]:
    """(apiVersion, kind) of the watched child kinds: the ones the `children` index covers."""
    return frozenset((f"{g}/{v}" if g else v, kind) for g, v, _, kind in CHILD_KINDS)


async def secret_refs_index(
    *, namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[tuple[str, str], str]:
    """Kopf index: (namespace, Secret name) → PhoenixAuth names that reference the Secret.

    The references are those of the typed spec (`spec.secret_uses`); an invalid spec references
    nothing (its reconcile reads no Secret, it reports what to fix). Async although it never
    awaits: Kopf runs a sync handler in its thread pool, and every handler here is a few
    microseconds of work on the event loop (no thread pool, no per-thread malloc arenas)."""
    if namespace is None:  # PhoenixAuth is namespaced: never, but the index's type allows it
        return {}
    try:
        uses = secret_uses(parse_spec(dict(spec)))
    except SpecInvalid:
        return {}
    return {(namespace, use.ref.name): name for use in uses}


def _indexed(index: kopf.Index[OwnerKey, Entry] | None, owner: OwnerKey, uid: str | None) -> Entry | None:
    """This object's entry among its owner's in the `children` index."""
    if index is None or owner not in index:
        return None
    return next((e for e in index[owner] if e.uid == uid), None)


def _changed(memo: kopf.Memo, fingerprint: Any) -> bool:
    """True (and remembered) when `fingerprint` differs from the one of the last wake."""
    if memo.get(_SEEN) == fingerprint:
        return False
    memo[_SEEN] = fingerprint
    return True


class Wakers:
    """The on.event handlers: each decides whether an event concerns a loop, and wakes it."""

    def __init__(self, wakeups: Wakeups) -> None:
        self.wakeups = wakeups

    async def on_phoenixauth(
        self, body: Mapping[str, Any], type: str | None, memo: kopf.Memo, **_: Any
    ) -> None:
        """A spec change (generation) or a deletion wakes the object's loop; its own status
        patches do not.

        Also drops the event's managedFields: Kopf keeps every PhoenixAuth's latest body for its
        daemon (this very dict: Kopf's body views resolve to the event it decoded), and nothing
        here reads the field-ownership map, ~16 KB of Python objects per PhoenixAuth (16 MB at
        1,000); and, once the object's loop runs, its status dict is emptied into the loop's
        compact copy (`ObjectState.keep_watched`; the reconcile reads it from there). Neither
        changes anything on the server: Kopf never sends a body back."""
        meta = body["metadata"]
        if isinstance(meta, dict):
            meta.pop("managedFields", None)
        key = (meta["namespace"], meta["name"])
        status = body.get("status")
        self.wakeups.seen(key, resource_version(body), status if isinstance(status, dict) else None)
        fingerprint = (meta.get("generation"), bool(meta.get("deletionTimestamp")))
        if _changed(memo, fingerprint) and type is not None:
            self.wakeups.wake(key)

    async def on_child(
        self,
        body: Mapping[str, Any],
        type: str | None,
        memo: kopf.Memo,
        children: kopf.Index[OwnerKey, Entry] | None = None,
        **_: Any,
    ) -> None:
        """A child's content or read status changed, or it was deleted: wake its owner's loop.
        The digests are the ones the `children` index just made of this very event (Kopf indexes
        an event before it calls event handlers): a body is digested once, not twice."""
        meta = body["metadata"]
        owner, namespace = controller_owner(body), meta.get("namespace")
        if owner is None or namespace is None:
            return
        if type == "DELETED":
            fingerprint: Any = _GONE
        else:
            entry = _indexed(children, (namespace, owner), meta.get("uid"))
            fingerprint = (entry.content, entry.relevant) if entry is not None else None
        if _changed(memo, fingerprint) and type is not None:  # a listing at start wakes nobody
            self.wakeups.wake((namespace, owner))

    async def on_secret(
        self,
        body: Mapping[str, Any],
        type: str | None,
        memo: kopf.Memo,
        secret_refs: kopf.Index[tuple[str, str], str] | None = None,
        **_: Any,
    ) -> None:
        """A watched Secret changed: wake every PhoenixAuth that references it (new hash →
        rollout) and the one that owns it. One that loses the label arrives as DELETED, and the
        next reconcile labels it again."""
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        # A digest, not the data: Kopf keeps the memo as long as the Secret exists, and the
        # event's data and labels dicts with it (a second copy beside the `secrets` index).
        fingerprint = _GONE if type == "DELETED" else stable_hash(body.get("data"), meta.get("labels"))
        if not _changed(memo, fingerprint) or type is None:
            return
        owners = set(secret_refs.get((namespace, name), ())) if secret_refs is not None else set()
        if (owner := controller_owner(body)) is not None:
            owners.add(owner)
        for owner_name in owners:
            self.wakeups.wake((namespace, owner_name))


def register(registry: kopf.OperatorRegistry, loops: Loops) -> None:
    """Register all handlers on `registry` (called by the CLI; nothing registers at import)."""
    resource = (GROUP, VERSION, PLURAL)
    wakers = Wakers(loops.wakeups)

    @kopf.on.startup(registry=registry)
    async def bind_indexes(**kwargs: Any) -> None:
        # Kopf passes every index by its id; it fills them from its first listings before any
        # daemon starts.
        loops.reconciler.store = Store(kwargs["children"], kwargs["secrets"], child_api_kinds())

    # Kopf cancels a daemon that has not exited a few zero-time cycles after its stop flag is set
    # (any cancellation_timeout: the first check is at age 0). The loop relies on that to leave a
    # sleep (daemon.WakeFlag); a reconcile is level-based, so an interrupted one is redone.
    kopf.daemon(*resource, registry=registry, id="reconcile", cancellation_timeout=1.0)(loops.run)
    kopf.index(*resource, registry=registry, id="secret_refs")(secret_refs_index)
    kopf.on.event(*resource, registry=registry, id="wake-on-spec")(wakers.on_phoenixauth)
    # Referenced Secrets (DB URLs, external Redis URL, extraEnv) are not owned, so they are watched
    # apart, through the watched label (WATCH_LABEL_SELECTORS; the client-side filter repeats it).
    secret_filter = {LABEL_WATCHED_SECRET: WATCHED_SECRET}
    kopf.index(*SECRETS, registry=registry, id="secrets", labels=secret_filter)(secrets_index)
    kopf.on.event(*SECRETS, registry=registry, id="wake-on-secret", labels=secret_filter)(wakers.on_secret)
    for group, version, plural, _kind in CHILD_KINDS:
        labels = {LABEL_MANAGED_BY: MANAGED_BY}
        # One index over all child kinds (one id): Kopf keys its entries by object uid.
        kopf.index(group, version, plural, registry=registry, id="children", labels=labels)(children_index)
        kopf.on.event(group, version, plural, registry=registry, id=f"wake-on-{plural}", labels=labels)(
            wakers.on_child
        )
