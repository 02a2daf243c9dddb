"""One reconcile's working context: the owner, its spec, what it observed, and the child primitives
(read, apply, delete, read a referenced Secret) every step uses.

`ObjectState` is what a PhoenixAuth's loop keeps between its reconciles: the answers of our last
applies (so an unchanged child costs no request) and the status we last wrote (so a reconcile
never starts from an older one than ours). It lives as long as the loop; a restart starts cold,
which only costs one apply per child.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from phoenix_operator.builders.common import LABEL_WATCHED_SECRET, WATCHED_SECRET, Owner, stable_hash
from phoenix_operator.errors import ChildConflict, TransientError
from phoenix_operator.kube import KubeClient
from phoenix_operator.pool_sizing import PoolSize
from phoenix_operator.spec import PhoenixAuthSpec, SecretUse
from phoenix_operator.status import Condition
from phoenix_operator.store import Entry, Store, content_digest, entry_of

ChildKey = tuple[str, str, str]  # (apiVersion, kind, name) within the owner's namespace
Emit = Callable[[Mapping[str, Any], str, str, str], None]  # (body, Normal|Warning, reason, message)

# Reason of the condition a missing Secret key sets, by the spec field that names the Secret.
MISSING_SECRET_REASON = {
    "spec.database.secretRef": "DatabaseSecretMissing",
    "spec.database.migrationSecretRef": "MigrationSecretMissing",
    "spec.redis.external.secretRef": "RedisSecretMissing",
    "spec.redis.external.caSecretRef": "RedisCASecretMissing",
    "spec.authService.adminTokenSecretRef": "AdminTokenSecretMissing",
    "spec.authService.cacheSigningKeySecretRef": "CacheSigningKeySecretMissing",
}


class _Unread(enum.Enum):
    """The caller has not read the child: `apply` reads it (None already means absent)."""

    UNREAD = enum.auto()


UNREAD = _Unread.UNREAD


def version(body: Mapping[str, Any]) -> int:
    """metadata.resourceVersion as a number (-1 when absent): later versions are larger."""
    rv = str((body.get("metadata") or {}).get("resourceVersion") or "")
    return int(rv) if rv.isdigit() else -1


@dataclass
class ObjectState:
    """Kept by one PhoenixAuth's loop across its reconciles."""

    # child → `applied_mark(content digest of our last apply's answer, digest of what we applied)`
    applied: dict[ChildKey, str] = field(default_factory=dict)
    status: dict[str, Any] | None = None  # the status our last patch wrote
    status_version: int = -1  # resourceVersion of that patch's answer
    watched_status: str | None = None  # the status the watch last showed, as JSON (`keep_watched`)
    unindexed: set[ChildKey] = field(default_factory=set)  # met outside the index: GET them

    def unseen_status(self, version: int) -> dict[str, Any] | None:
        """The status our last patch wrote while the watch has shown the object only up to an
        older `version`; once it shows that patch (or later), the body holds the status and our
        copy goes: one copy per PhoenixAuth, not two."""
        if self.status is not None and self.status_version <= version:
            self.status = None
        return self.status

    def keep_watched(self, status: dict[str, Any]) -> None:
        """Keep the status of the event the watch just showed as JSON and empty the event's own
        dict, which Kopf keeps as the loop's live body: ~8.4 KB of dicts per PhoenixAuth become
        ~2.6 KB of text. `last_status` reads it back."""
        self.watched_status = json.dumps(status, separators=(",", ":")) if status else None
        status.clear()

    def last_status(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The status to start a reconcile from: our own last patch while the watch has not shown
        it, else the body's (an event `keep_watched` has not reached yet), else the kept one."""
        unseen = self.unseen_status(version(body))
        if unseen is not None:
            return dict(unseen)
        status = body.get("status")
        if status:
            return dict(status)
        return json.loads(self.watched_status) if self.watched_status else {}


@dataclass
class Observed:
    """Facts gathered while converging, turned into status at the end."""

    spec: PhoenixAuthSpec | None = None
    pool: PoolSize | None = None
    budget_source: str | None = None
    config_hash: str | None = None
    redis: dict[str, Any] = field(default_factory=dict)
    redis_ready: Condition | None = None
    deployment: dict[str, Any] | None = None
    desired_replicas: int | None = None
    migrations: dict[str, Any] = field(default_factory=dict)
    migrations_cond: Condition | None = None
    monitoring: dict[str, bool] = field(default_factory=dict)
    monitoring_cond: Condition | None = None


def applied_mark(content: str, wanted: str) -> str:
    """What a loop remembers of one apply: both digests in one string (a dozen per PhoenixAuth
    for its life; a tuple of two strings cost ~180 bytes more each)."""
    return f"{content}/{wanted}"


def secret_value(secret: Mapping[str, Any] | None, key: str) -> str | None:
    data = (secret or {}).get("data") or {}
    raw = data.get(key)
    if raw is None:
        return None
    return base64.b64decode(raw).decode()


def digest(value: str | None) -> str:
    """One-way digest of a secret value for the config hash (the value itself goes nowhere)."""
    return hashlib.sha256((value or "").encode()).hexdigest()[:16]


def missing(namespace: str, use: SecretUse) -> TransientError:
    """A referenced Secret key is missing: retried (it may be created any moment), named in status."""
    return TransientError(
        f"Secret {namespace}/{use.ref.name} with key {use.ref.key} not found ({use.field})",
        reason=MISSING_SECRET_REASON.get(use.field, "ExtraEnvSecretMissing"),
        delay=30.0,
    )


async def together(*steps: Awaitable[Any]) -> list[Any]:
    """Run independent steps (or applies) at once: every one finishes, then the first error in
    argument order is raised. A reconcile's requests then wait on one round trip per wave, not
    one per child, and an error stops nothing a sequential run would have done."""
    results = await asyncio.gather(*steps, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def _taken(obj: Mapping[str, Any], advice: str) -> ChildConflict:
    meta = obj["metadata"]
    return ChildConflict(
        f"{obj['kind']} {meta['namespace']}/{meta['name']} exists and is not owned by this "
        f"PhoenixAuth; {advice}"
    )


def owned_by(obj: Mapping[str, Any] | None, owner: Owner) -> bool:
    refs = ((obj or {}).get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == owner.uid for ref in refs)


def _watched(secret: Mapping[str, Any]) -> bool:
    labels = (secret.get("metadata") or {}).get("labels") or {}
    return labels.get(LABEL_WATCHED_SECRET) == WATCHED_SECRET


@dataclass
class Run:
    """One reconcile of one PhoenixAuth."""

    owner: Owner
    body: Mapping[str, Any]  # for Events about this object
    kube: KubeClient
    store: Store
    state: ObjectState
    emit: Emit
    obs: Observed = field(default_factory=Observed)
    presumed: set[ChildKey] = field(default_factory=set)  # read as absent without a GET

    @property
    def ns(self) -> str:
        return self.owner.namespace

    @property
    def spec(self) -> PhoenixAuthSpec:
        assert self.obs.spec is not None  # set before any step runs
        return self.obs.spec

    # ------------------------------------------------------------------ children
    def indexed(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        """The child as the watch last saw it (None: not indexed)."""
        entry = self.store.child((self.ns, self.owner.name), api_version, kind, name)
        return entry.body if entry is not None else None

    def indexed_children(self, api_version: str, kind: str) -> list[dict[str, Any]]:
        return [e.body for e in self.store.children((self.ns, self.owner.name), api_version, kind)]

    def _entry(self, key: ChildKey) -> Entry | None:
        """Our Secrets live in the `secrets` index (they carry the watched label), the rest in
        `children`."""
        if key[1] == "Secret":
            return self.store.secret(self.ns, key[2])
        return self.store.child((self.ns, self.owner.name), *key)

    def _presume_absent(self, key: ChildKey) -> bool:
        """True when a child the index misses is most likely absent: the index is complete for
        its kind, and this loop has neither applied it nor met it outside the index. The apply
        that follows then only creates (`KubeClient.create`), so the guess costs no GET and is
        checked by the API server: an object of that name, ours or not, makes it fail."""
        if not self.store.covers(key[0], key[1]) or key in self.state.applied or key in self.state.unindexed:
            return False
        self.presumed.add(key)
        return True

    async def read(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        """One of our children from the index; on a miss None when absence is presumed, else a
        GET (a miss may hide an object without our labels)."""
        key = (api_version, kind, name)
        entry = self._entry(key)
        if entry is not None:
            return entry.body
        if self._presume_absent(key):
            return None
        return await self.kube.get(api_version, kind, self.ns, name)

    async def apply(
        self,
        obj: dict[str, Any],
        current: dict[str, Any] | _Unread | None = UNREAD,
        *,
        advice: str = "rename or delete it (the operator never overwrites objects it does not own)",
    ) -> dict[str, Any]:
        """Apply a child, refusing to take over an object of the same name we do not own.

        `current`: the object as the caller just read it with `read`, None if absent (saves a
        second read). Same content as our last apply's answer and the same desired object: nobody
        changed it since, so no request. Any edit of its content (by hand or by a controller) puts
        it back. `advice` ends the message when the name is taken."""
        meta = obj["metadata"]
        key: ChildKey = (obj["apiVersion"], obj["kind"], meta["name"])
        entry = self._entry(key)
        if current is UNREAD:
            if entry is not None:
                current = entry.body
            elif self._presume_absent(key):
                current = None
            else:
                current = await self.kube.get(key[0], key[1], self.ns, key[2])
        if current is not None and not owned_by(current, self.owner):
            raise _taken(obj, advice)
        wanted = stable_hash(obj)
        remembered = self.state.applied.get(key)
        if current is not None and remembered is not None and remembered.endswith(f"/{wanted}"):
            seen = entry.content if entry is not None and entry.shows(current) else content_digest(current)
            if remembered == applied_mark(seen, wanted):
                return current
        if current is None and key in self.presumed:
            applied = await self.kube.create(obj) or await self._exists(key, obj, advice)
        else:
            applied = await self.kube.apply(obj)
        self.state.applied[key] = applied_mark(content_digest(applied), wanted)
        return applied

    async def _exists(self, key: ChildKey, obj: dict[str, Any], advice: str) -> dict[str, Any]:
        """A create-only apply found the name taken: read that object (with a GET from now on).
        Not ours: refused as always. Ours but not indexed (the watch lags, or its labels were
        removed): the step computed its object believing it absent (a Secret's values, the
        replicas), so the reconcile is retried and reads it. Gone again: applied as usual."""
        self.presumed.discard(key)
        self.state.unindexed.add(key)
        found = await self.kube.get(key[0], key[1], self.ns, key[2])
        if found is None:
            return await self.kube.apply(obj)
        if not owned_by(found, self.owner):
            raise _taken(obj, advice)
        raise TransientError(
            f"{key[1]} {self.ns}/{key[2]} exists but the operator's watch has not shown it yet; "
            "reading it again",
            reason="ChildNotIndexed",
            delay=1.0,
        )

    async def delete_owned(self, api_version: str, kind: str, name: str) -> None:
        """Delete a child we own if it exists. For a kind Kopf watches a miss means absent (ours
        carry the label the watch selects by), so an optional child left off costs no request."""
        current: dict[str, Any] | None
        if self.store.covers(api_version, kind):
            entry = self.store.secret(self.ns, name) if kind == "Secret" else None
            current = entry.body if entry is not None else self.indexed(api_version, kind, name)
        elif kind == "Secret":
            current = await self.read_secret(name)
        else:
            current = await self.read(api_version, kind, name)
        if current is not None and owned_by(current, self.owner):
            await self.kube.delete(api_version, kind, self.ns, name)
            self.state.applied.pop((api_version, kind, name), None)

    # ------------------------------------------------------------------ Secrets
    async def read_secret(self, name: str) -> dict[str, Any] | None:
        """A Secret from the `secrets` index (the watched ones), else a GET."""
        entry = self.store.secret(self.ns, name)
        if entry is not None:
            return entry.body
        return await self.kube.get("v1", "Secret", self.ns, name)

    async def secret_value(self, use: SecretUse) -> str | None:
        """The value of a referenced Secret key (None when the Secret or key is missing).

        The Secret gets the watched label (one merge patch, once) so the operator's label-selected
        Secret watch sees its later changes: that label is how the operator sees only the Secrets
        PhoenixAuths reference, not every Secret of the namespace."""
        secret = await self.read_secret(use.ref.name)
        if secret is not None and not _watched(secret):
            labels = {LABEL_WATCHED_SECRET: WATCHED_SECRET}
            labelled = await self.kube.label("v1", "Secret", self.ns, use.ref.name, labels)
            if labelled is not None:
                secret = entry_of({**labelled, "apiVersion": "v1", "kind": "Secret"}).body
        return secret_value(secret, use.ref.key)

    async def require_secret(self, use: SecretUse) -> str:
        value = await self.secret_value(use)
        if value is None:
            raise missing(self.ns, use)
        return value
