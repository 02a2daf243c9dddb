"""Thin Kopf registrations: every trigger calls the one idempotent `Reconciler.reconcile()`.

- PhoenixAuth create / update / resume, and a slow timer (level-based safety net).
- on.event on owned kinds (label app.kubernetes.io/managed-by=phoenix-operator): a child
  edited, deleted, or changing status the reconcile reads (pods becoming ready, a Job finishing)
  reconciles its owner, which puts drifted fields back and refreshes status. The event bodies
  feed the ChildCache the reconcile reads children from (no GET per child), and the events of one
  owner are coalesced: the first one waits DEBOUNCE_SECONDS on the event loop, the ones arriving
  meanwhile join it, then one reconcile runs (a Deployment going 0→1→2 ready, its ReplicaSet
  and its Job finishing at once cost one reconcile, not five).
- on.event on Secrets, selected server-side by the watched label (`auth.phoenix.dev/watched=true`)
  that the operator puts on every Secret a PhoenixAuth references and on the Secrets it makes: a
  change reconciles the PhoenixAuths that reference it (a Kopf index maps Secret → PhoenixAuths).
  No other Secret of the namespace ever reaches the operator.
No on.delete handler: the garbage collector removes the children through their ownerReferences.
Kopf still adds its finalizer because its timers always require one (see docs/operator.md).

Error policy: TransientError → kopf.TemporaryError with exponential backoff (capped);
PermanentError → already written to status as conditions; the handler returns quietly and
waits for the next spec change (or the timer) instead of retrying forever.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from concurrent.futures import Executor
from typing import Any

import kopf

from phoenix_operator.builders.common import (
    GROUP,
    KIND,
    LABEL_MANAGED_BY,
    LABEL_WATCHED_SECRET,
    MANAGED_BY,
    PLURAL,
    VERSION,
    WATCHED_SECRET,
)
from phoenix_operator.cache import ChildCache
from phoenix_operator.errors import SpecInvalid, TransientError
from phoenix_operator.reconcile import Outcome, Reconciler, Serializer
from phoenix_operator.spec import parse_spec, secret_uses

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
SECRETS = ("", "v1", "secrets")
# Server-side label selectors of Kopf's watches (settings.watching.label_selectors at start-up).
WATCH_LABEL_SELECTORS: dict[tuple[str, str, str], str] = {SECRETS: f"{LABEL_WATCHED_SECRET}={WATCHED_SECRET}"}
MAX_BACKOFF = 300.0
# How long the first child event of an owner waits for its siblings before the one reconcile.
DEBOUNCE_SECONDS = 0.5


def backoff(retry: int, base: float) -> float:
    """Exponential backoff for Kopf retries: base, 2·base, 4·base ... capped at 5 minutes."""
    return min(MAX_BACKOFF, base * 2.0 ** max(0, retry))


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

    def __init__(
        self,
        reconciler: Reconciler,
        serializer: Serializer | None = None,
        *,
        executor: Executor | None = None,
        debounce: float = DEBOUNCE_SECONDS,
    ) -> None:
        self.reconciler = reconciler
        self.serializer = serializer or Serializer()
        self.executor = executor  # None: the event loop's default executor
        self.debounce = debounce
        self._pending: set[str] = set()  # owners whose coalesced reconcile has not started yet
        self._tasks: set[asyncio.Task[None]] = set()  # referenced until done (else GC'd mid-flight)

    @property
    def cache(self) -> ChildCache:
        return self.reconciler.cache

    def _fresh(self, namespace: str, name: str) -> Outcome | None:
        api_version = f"{GROUP}/{VERSION}"
        body = self.cache.get(api_version, KIND, namespace, name) or self.reconciler.kube.get(
            api_version, KIND, namespace, name
        )
        if body is None or body.get("metadata", {}).get("deletionTimestamp"):
            return None  # gone or going: the garbage collector handles the children
        return self.reconciler.reconcile(body)

    def _fresh_or_empty(self, namespace: str, name: str) -> Outcome:
        return self._fresh(namespace, name) or Outcome(status={})

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

    async def on_parent_event(self, body: Any, type: str | None = None, **_: Any) -> None:
        """Every PhoenixAuth event: keep the cached copy current (reconciles use it for children)."""
        self.cache.observe(body, type)

    def on_secret(self, body: Any, secret_refs: Any = None, type: str | None = None, **_: Any) -> None:
        """A watched Secret changed: reconcile every PhoenixAuth that references it (new hash →
        rollout). Only labelled Secrets arrive (referenced ones and ours), so all are cached; one
        that loses the label arrives as DELETED, and the next reconcile labels it again."""
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        self.cache.observe({**body, "apiVersion": "v1", "kind": "Secret"}, type)
        if type is None or secret_refs is None:
            return
        for owner in set(secret_refs.get((namespace, name), ())):
            key = f"{namespace}/{owner}"
            try:
                self.serializer.run(
                    key,
                    functools.partial(self._fresh_or_empty, namespace, owner),
                    functools.partial(self._fresh, namespace, owner),
                    wait=False,
                )
            except TransientError as exc:
                log.info("secret event reconcile of %s deferred: %s", key, exc.message)

    async def on_child(self, body: Any, type: str | None = None, **_: Any) -> None:
        """Any event of an owned child: reconcile the owner (drift back, status refreshed).

        Events that change nothing the reconcile reads (HPA metrics every 15 s, PDB disruption
        counts, a Deployment's availableReplicas or condition timestamps) only update the cache.
        """
        relevant = self.cache.observe(body, type)
        if type is None or not relevant:  # initial listing: the parent's resume handler covers it
            return
        owner = _owner_name(body)
        if not owner:
            return
        await self.reconcile_soon(body["metadata"]["namespace"], owner)

    async def reconcile_soon(self, namespace: str, owner: str) -> None:
        """Coalesce: the first event of an owner schedules one reconcile `debounce` seconds later;
        the ones arriving meanwhile join it. Returns at once: Kopf's worker for the child (and the
        event body it holds) is released instead of waiting for the reconcile, which kept a body
        per busy child alive and was most of the operator's peak memory at 200 PhoenixAuths."""
        key = f"{namespace}/{owner}"
        if key in self._pending:
            return
        self._pending.add(key)
        task = asyncio.create_task(self._reconcile_later(key, namespace, owner), name=f"reconcile {key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the scheduled child-event reconciles (tests; nothing else needs to)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _reconcile_later(self, key: str, namespace: str, owner: str) -> None:
        try:
            await asyncio.sleep(self.debounce)
        finally:
            self._pending.discard(key)
        loop = asyncio.get_running_loop()
        # Run in a copy of this handler's context: kopf.event() finds Kopf's event queue there
        # (without it, transition Events would only be logged).
        context = contextvars.copy_context()
        try:
            await loop.run_in_executor(
                self.executor,
                context.run,
                lambda: self.serializer.run(
                    key,
                    lambda: self._fresh(namespace, owner) or Outcome(status={}),
                    lambda: self._fresh(namespace, owner),
                    wait=False,
                ),
            )
        except TransientError as exc:  # event handlers are not retried; the timer catches up
            log.info("child event reconcile of %s deferred: %s", key, exc.message)
        except Exception:  # a detached task: nobody else would see it
            log.exception("child event reconcile of %s failed; the resync timer retries", key)


def secret_refs_index(
    *, namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[tuple[str, str], str]:
    """Kopf index: (namespace, Secret name) → PhoenixAuth names that reference the Secret.

    The references are those of the typed spec (`spec.secret_uses`); an invalid spec references
    nothing (its reconcile reads no Secret, it reports what to fix)."""
    if namespace is None:  # PhoenixAuth is namespaced: never, but the index's type allows it
        return {}
    try:
        uses = secret_uses(parse_spec(dict(spec)))
    except SpecInvalid:
        return {}
    return {(namespace, use.ref.name): name for use in uses}


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
    kopf.on.event(*resource, registry=registry, id="cache-phoenixauths")(handlers.on_parent_event)
    # Referenced Secrets (DB URLs, external Redis URL, extraEnv) are not owned, so they are watched
    # apart, through the watched label (WATCH_LABEL_SELECTORS; the client-side filter repeats it).
    kopf.on.event(
        *SECRETS,
        registry=registry,
        id="referenced-secrets",
        labels={LABEL_WATCHED_SECRET: WATCHED_SECRET},
    )(handlers.on_secret)
    for group, version, plural in CHILD_KINDS:
        kopf.on.event(
            group,
            version,
            plural,
            registry=registry,
            id=f"drift-{plural}",
            labels={LABEL_MANAGED_BY: MANAGED_BY},
        )(handlers.on_child)
