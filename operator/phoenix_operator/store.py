"""Children and referenced Secrets as Kopf's watches last saw them, served from Kopf indexes.

Kopf watches every owned child kind (selected by the managed-by label) and the Secrets that carry
the watched label; two index functions keep a slim entry per object in Kopf's own indexes:
`children` maps (namespace, owner name) to the entries of that PhoenixAuth's children, `secrets`
maps (namespace, name) to one entry. Kopf fills every index from its initial listing before any
daemon starts, and keeps it current from the watch streams, so a reconcile reads what it needs from
memory; no cache of ours beside Kopf's watches.

Rules the reconcile relies on (docs/operator.md):
- An entry is what the API server said at some resourceVersion; a lagging one makes the reconcile
  apply once more (a no-op for the server), never skip a needed apply: skipping needs the entry's
  content (all but status and bookkeeping metadata) to equal what our last apply returned.
- A miss of a child the reconcile is about to apply means "probably absent": a foreign object of
  the same name has no managed-by label, so the index cannot show it. The apply then only creates
  (`KubeClient.create`), and the API server's answer settles it (`Run.apply`). A miss of an owned
  child it only means to delete means absent: ours carry the label, so the complete index would
  hold them.
Entries keep what the reconcile reads, not whole bodies: managedFields and pod templates would
cost tens of MB at a thousand PhoenixAuths, and even slim bodies as dicts ~7 MB more than flat
entries (`Entry`).
"""

from __future__ import annotations

import json
import sys
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

import kopf

from phoenix_operator.builders.common import GROUP, KIND, stable_hash
from phoenix_operator.builders.migration_job import job_completed_at, job_state

OwnerKey = tuple[str, str]  # (namespace, PhoenixAuth name)
_VOLATILE_METADATA = ("resourceVersion", "managedFields", "generation")
# Written by controllers right after our apply (not ours, never drift): re-applying for them would
# cost one apply per Deployment for nothing.
_CONTROLLER_ANNOTATIONS = frozenset({"deployment.kubernetes.io/revision"})
_DEPLOYMENT_STATUS = ("observedGeneration", "replicas", "readyReplicas", "updatedReplicas")


@dataclass(frozen=True, slots=True)
class Entry:
    """One object as the watch last saw it: the fields the reconcile reads, plus the digests
    drift is judged by.

    Kept as flat slots, not as a slim body: a dozen entries per PhoenixAuth live as long as the
    object, and a dict per metadata, labels and body cost ~1.2 KB an entry where these cost ~0.6
    (docs/benchmarks.md). `body` builds the slim body on each read (reconciles read a few)."""

    api_version: str
    kind: str
    name: str
    namespace: str | None
    uid: str | None
    resource_version: str | None
    generation: int | None
    label_pairs: tuple[str, ...]  # k1, v1, k2, v2 ... (interned)
    owner_refs: Any  # shared read-only list (`shared_owner_refs`), or None
    extra: Any  # by kind: Deployment (spec.replicas, status), Job status, Secret data; else None
    content: str  # content_digest of the full body
    relevant: Any  # relevant_status of the full body

    @property
    def labels(self) -> dict[str, str]:
        pairs = self.label_pairs
        return dict(zip(pairs[::2], pairs[1::2], strict=True))

    @property
    def body(self) -> dict[str, Any]:
        """The slim body: apiVersion, kind, the metadata the reconcile reads and, by kind, the
        Deployment's replicas and status (without conditions), a Job's status, a Secret's data.
        A new dict on each read (nested values are shared with the entry: do not change them)."""
        meta: dict[str, Any] = {"name": self.name}
        for key, value in (
            ("namespace", self.namespace),
            ("uid", self.uid),
            ("resourceVersion", self.resource_version),
            ("generation", self.generation),
        ):
            if value is not None:
                meta[key] = value
        if self.label_pairs:
            meta["labels"] = self.labels
        if self.owner_refs is not None:
            meta["ownerReferences"] = self.owner_refs
        out: dict[str, Any] = {"apiVersion": self.api_version, "kind": self.kind, "metadata": meta}
        if self.kind == "Deployment":
            replicas, status = self.extra
            out["spec"] = {"replicas": replicas}
            out["status"] = status
        elif self.kind == "Job":
            out["status"] = self.extra
        elif self.kind == "Secret":
            out["data"] = self.extra
        return out

    def shows(self, body: Mapping[str, Any]) -> bool:
        """True when `body` is this object at this entry's resourceVersion (so its content
        digest is this entry's, without digesting it again)."""
        meta = body.get("metadata") or {}
        return (
            self.resource_version is not None
            and meta.get("resourceVersion") == self.resource_version
            and meta.get("uid") == self.uid
        )


def relevant_status(body: Mapping[str, Any]) -> Any:
    """The part of a child's status the reconcile reads (None for kinds whose status it ignores)."""
    kind = body.get("kind")
    if kind == "Deployment":
        status = body.get("status") or {}
        return tuple(status.get(k) for k in _DEPLOYMENT_STATUS)
    if kind == "Job":
        job = dict(body)
        return (job_state(job), job_completed_at(job))
    return None


def content_digest(body: Mapping[str, Any]) -> str:
    """Digest of an object without its status and bookkeeping metadata: what drift means.

    Status updates (a Deployment's ready count, an HPA's metrics) move the resourceVersion but not
    this, so "unchanged since our apply" is judged by it, not by the resourceVersion."""
    meta = {k: v for k, v in dict(body.get("metadata") or {}).items() if k not in _VOLATILE_METADATA}
    meta["annotations"] = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k not in _CONTROLLER_ANNOTATIONS
    }
    rest = {k: v for k, v in dict(body).items() if k not in ("metadata", "status")}
    return stable_hash(meta, rest)


def _interned(value: Any) -> Any:
    """A copy of a small JSON value with its strings interned. Every decoded watch event has its
    own copies of the same label keys and values, owner references, namespace and kind; thousands
    of entries share one each instead."""
    if isinstance(value, str):
        return sys.intern(value)
    if isinstance(value, dict):
        return {sys.intern(k): _interned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_interned(v) for v in value]
    return value


class FrozenDict(dict[str, Any]):
    """A dict that refuses changes: shared by many index entries (`shared_owner_refs`)."""

    __slots__ = ("__weakref__",)

    def _refuse(self, *_: Any, **__: Any) -> NoReturn:
        raise TypeError("an index entry's shared owner reference is read-only; copy it to change it")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse


class FrozenList(list[Any]):
    """A list that refuses changes: shared by many index entries (`shared_owner_refs`)."""

    __slots__ = ("__weakref__",)

    def _refuse(self, *_: Any, **__: Any) -> NoReturn:
        raise TypeError("an index entry's shared owner references are read-only; copy them to change them")

    __setitem__ = __delitem__ = append = extend = insert = pop = remove = clear = sort = reverse = _refuse
    __iadd__ = __imul__ = _refuse


# Owner references shared by the entries that hold equal ones, while any entry holds them.
_SHARED_REFS: weakref.WeakValueDictionary[str, FrozenList] = weakref.WeakValueDictionary()


def shared_owner_refs(refs: Any) -> Any:
    """One read-only list for equal owner references across index entries.

    A PhoenixAuth's dozen children carry the same owner reference; each decoded event has its
    own copy (~440 bytes an entry). The table holds them weakly, so a list no entry uses any more
    is gone with its last entry. (Labels are not shared: they differ by child and name the
    PhoenixAuth, so most sets would have one user and the table's key would cost more.)"""
    if not isinstance(refs, list):
        return _interned(refs)
    key = json.dumps(refs, sort_keys=True, separators=(",", ":"))
    found = _SHARED_REFS.get(key)
    if found is None:
        found = _SHARED_REFS[key] = FrozenList(
            FrozenDict(_interned(ref)) if isinstance(ref, dict) else _interned(ref) for ref in refs
        )
    return found


def _extra(body: Mapping[str, Any]) -> Any:
    kind = body.get("kind")
    if kind == "Deployment":
        status = {k: v for k, v in (body.get("status") or {}).items() if k != "conditions"}
        return ((body.get("spec") or {}).get("replicas"), _interned(status))
    if kind == "Job":
        return dict(body.get("status") or {})
    if kind == "Secret":
        return dict(body.get("data") or {})  # secret values: never interned
    return None


def entry_of(body: Mapping[str, Any]) -> Entry:
    """The index entry of a decoded object (the whole body is digested, a few fields kept)."""
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    refs = meta.get("ownerReferences")
    rv = meta.get("resourceVersion")
    return Entry(
        api_version=_interned(str(body.get("apiVersion"))),
        kind=_interned(str(body.get("kind"))),
        name=str(meta.get("name") or ""),
        namespace=_interned(meta.get("namespace")),
        uid=meta.get("uid"),
        resource_version=None if rv is None else str(rv),
        generation=meta.get("generation"),
        label_pairs=tuple(sys.intern(str(x)) for kv in labels.items() for x in kv),
        owner_refs=None if refs is None else shared_owner_refs(refs),
        extra=_extra(body),
        content=content_digest(body),
        relevant=relevant_status(body),
    )


def controller_owner(body: Mapping[str, Any]) -> str | None:
    """The name of the PhoenixAuth that controls this object, if one does."""
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if (
            ref.get("kind") == KIND
            and str(ref.get("apiVersion", "")).startswith(f"{GROUP}/")
            and ref.get("controller")
        ):
            return str(ref["name"])
    return None


def _typed(body: Mapping[str, Any], resource: kopf.Resource) -> dict[str, Any]:
    """The body with its apiVersion and kind (items of a LIST may come without them)."""
    api_version = f"{resource.group}/{resource.version}" if resource.group else resource.version
    return {**body, "apiVersion": api_version, "kind": resource.kind or body.get("kind")}


async def children_index(
    *, body: Mapping[str, Any], resource: kopf.Resource, namespace: str | None, **_: Any
) -> dict[OwnerKey, Entry] | None:
    """Kopf index `children`: (namespace, owner) → the entries of the objects it controls."""
    owner = controller_owner(body)
    if owner is None or namespace is None:
        return None
    return {(namespace, owner): entry_of(_typed(body, resource))}


async def secrets_index(
    *, body: Mapping[str, Any], resource: kopf.Resource, namespace: str | None, name: str | None, **_: Any
) -> dict[tuple[str, str], Entry] | None:
    """Kopf index `secrets`: (namespace, name) → the watched Secret (referenced ones and ours)."""
    if namespace is None or name is None:
        return None
    return {(namespace, name): entry_of(_typed(body, resource))}


class _Index(Protocol):
    def __contains__(self, item: object) -> bool: ...

    def __getitem__(self, item: Any) -> Iterable[Entry]: ...


class Store:
    """Read access to the two indexes for one reconcile. Without indexes (a one-off run, unit
    tests) it knows nothing, and every read falls back to the API."""

    def __init__(
        self,
        children: _Index | None = None,
        secrets: _Index | None = None,
        kinds: Iterable[tuple[str, str]] = (),
    ) -> None:
        self._children = children
        self._secrets = secrets
        self._kinds = frozenset(kinds)  # (apiVersion, kind) of the children Kopf watches

    def covers(self, api_version: str, kind: str) -> bool:
        """True when a miss of an owned object of this kind means absent: Kopf watches the kind
        (Secrets: the watched label, which ours carry) and has listed it before any loop ran."""
        if kind == "Secret":
            return self._secrets is not None
        return self._children is not None and (api_version, kind) in self._kinds

    def children(
        self, owner: OwnerKey, api_version: str | None = None, kind: str | None = None
    ) -> list[Entry]:
        if self._children is None or owner not in self._children:
            return []
        return [
            e
            for e in self._children[owner]
            if (api_version is None or e.api_version == api_version) and (kind is None or e.kind == kind)
        ]

    def child(self, owner: OwnerKey, api_version: str, kind: str, name: str) -> Entry | None:
        return next((e for e in self.children(owner, api_version, kind) if e.name == name), None)

    def secret(self, namespace: str, name: str) -> Entry | None:
        key = (namespace, name)
        if self._secrets is None or key not in self._secrets:
            return None
        return next(iter(self._secrets[key]), None)
