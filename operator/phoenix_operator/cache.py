"""A watch-fed cache of the children (and referenced Secrets) the operator reads on every reconcile.

Kopf already watches every owned child kind (the drift handlers) and every Secret (the
referenced-secrets handler). Feeding those event bodies into this cache lets a reconcile read
children from memory instead of one GET per child per reconcile, which at 200 PhoenixAuths was
half of the operator's time (py-spy: `KubeClient.get` 49 % of samples, all waiting on the API).

Correctness rules:
- Only watch events write entries (never our own applies), so an entry is always what the API
  server said at some resourceVersion; a lagging entry makes the reconciler apply once more (a
  no-op for the server), never skip a needed apply: the skip needs the entry's content (all but
  status and bookkeeping metadata) to equal what our last apply returned, and any edit changes
  it. The one exception is a Secret read by GET: all Secrets are watched (no label filter), so
  its later events keep it current, and an event older than the entry is ignored.
- A miss means "unknown", not "absent": the reconciler then GETs (a foreign object of the same name
  carries no managed-by label, so only a GET can tell it exists and refuse to take it over).
- PhoenixAuth objects are cached too (a child event's reconcile needs its owner's latest spec and
  status); their entries are also written from our own status patch's answer, so a reconcile
  never starts from a status older than the one we wrote. Newer resourceVersions win, so a late
  watch event cannot roll an entry back.
- DELETED drops the entry (with what we remember of our apply), so nothing of a garbage-collected
  child is kept: the cache is bounded by the live objects, like an informer.
Entries are slim copies (what the reconcile reads), not whole bodies: managedFields and pod
templates would otherwise cost tens of MB at a few hundred PhoenixAuths.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from phoenix_operator.builders.common import stable_hash
from phoenix_operator.builders.migration_job import job_completed_at, job_state

Key = tuple[str, str, str, str]  # (apiVersion, kind, namespace, name)

# Children whose status the reconcile reads: their events matter when those fields move.
STATUS_READ_KINDS = frozenset({"Deployment", "Job"})
_VOLATILE_METADATA = ("resourceVersion", "managedFields", "generation")
# Written by controllers right after our apply (not ours, never drift): re-applying for them would
# cost one apply per Deployment for nothing.
_CONTROLLER_ANNOTATIONS = frozenset({"deployment.kubernetes.io/revision"})
_KEPT_METADATA = ("name", "namespace", "uid", "resourceVersion", "generation", "labels", "ownerReferences")
MAX_APPLIED_ENTRIES = 100_000
_DEPLOYMENT_STATUS = ("observedGeneration", "replicas", "readyReplicas", "updatedReplicas")


def relevant_status(body: Mapping[str, Any]) -> Any:
    """The part of a child's status the reconcile reads (None for kinds whose status it ignores)."""
    kind = body.get("kind")
    if kind == "Deployment":
        status = body.get("status") or {}
        return {k: status.get(k) for k in _DEPLOYMENT_STATUS}
    if kind == "Job":
        job = dict(body)
        return (job_state(job), job_completed_at(job))
    return None


def content_digest(body: Mapping[str, Any]) -> str:
    """Digest of an object without its status and bookkeeping metadata: what drift means.

    Status updates (a Deployment's ready count, an HPA's metrics) move the resourceVersion but not
    this, so "unchanged since our apply" is judged by it, not by the resourceVersion."""
    meta = {k: v for k, v in dict(body.get("metadata") or {}).items() if k not in _VOLATILE_METADATA}
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k not in _CONTROLLER_ANNOTATIONS
    }
    meta["annotations"] = annotations
    rest = {k: v for k, v in dict(body).items() if k not in ("metadata", "status")}
    return stable_hash(meta, rest)


def slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields the reconcile reads from a cached object."""
    meta = dict(body.get("metadata") or {})
    out: dict[str, Any] = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {k: meta[k] for k in _KEPT_METADATA if k in meta},
    }
    kind = body.get("kind")
    if kind == "Deployment":
        out["spec"] = {"replicas": (body.get("spec") or {}).get("replicas")}
        out["status"] = dict(body.get("status") or {})
        out["status"].pop("conditions", None)
    elif kind == "Job":
        out["status"] = dict(body.get("status") or {})
    elif kind == "Secret":
        out["data"] = dict(body.get("data") or {})
    elif kind == "PhoenixAuth":
        if meta.get("deletionTimestamp"):
            out["metadata"]["deletionTimestamp"] = meta["deletionTimestamp"]
        out["spec"] = body.get("spec") or {}
        out["status"] = body.get("status") or {}
    return out


def key_of(body: Mapping[str, Any]) -> Key:
    meta = body.get("metadata") or {}
    return (
        str(body.get("apiVersion")),
        str(body.get("kind")),
        str(meta.get("namespace")),
        str(meta.get("name")),
    )


@dataclass
class _Entry:
    body: dict[str, Any]
    content: str  # content_digest of the full body
    relevant: Any  # relevant_status of the full body


class ChildCache:
    """Thread-safe: Kopf's event loop writes, handler threads read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Key, _Entry] = {}
        # What our last apply returned: key -> (content_digest of the answer, digest of what we
        # applied). A child whose content still equals the answer, with the same desired content,
        # needs no apply; any edit of its content (by hand or by a controller) changes it.
        self._applied: dict[Key, tuple[str, str]] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def observe(self, body: Mapping[str, Any], type_: str | None) -> bool:
        """Record a watch event; True when it changed something a reconcile reads (or deleted it)."""
        key = key_of(body)
        if type_ == "DELETED":
            self.forget(key)
            return True
        entry = _Entry(slim(body), content_digest(body), relevant_status(body))
        with self._lock:
            previous = self._entries.get(key)
            if previous is not None and _older(entry.body, previous.body):
                return False  # a late event: keep the newer entry
            self._entries[key] = entry
        return previous is None or (previous.content, previous.relevant) != (entry.content, entry.relevant)

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The cached object, or None when unknown (the caller GETs it)."""
        with self._lock:
            entry = self._entries.get((api_version, kind, namespace, name))
            return entry.body if entry is not None else None

    def content(self, key: Key) -> str | None:
        """content_digest of the cached object (its slim copy cannot be digested again)."""
        with self._lock:
            entry = self._entries.get(key)
            return entry.content if entry is not None else None

    def items(self, api_version: str, kind: str, namespace: str) -> Iterator[dict[str, Any]]:
        with self._lock:
            found = [
                e.body
                for (av, k, ns, _), e in self._entries.items()
                if (av, k, ns) == (api_version, kind, namespace)
            ]
        return iter(found)

    def applied(self, key: Key) -> tuple[str, str] | None:
        with self._lock:
            return self._applied.get(key)

    def remember_apply(self, key: Key, answer: Mapping[str, Any], digest: str) -> None:
        with self._lock:
            if len(self._applied) >= MAX_APPLIED_ENTRIES:  # not fed by watches (tests, one-off runs)
                self._applied.clear()
            self._applied[key] = (content_digest(answer), digest)

    def forget(self, key: Key) -> None:
        with self._lock:
            self._entries.pop(key, None)
            self._applied.pop(key, None)


def _older(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """True when `new` is certainly older than `old` (resourceVersions are etcd revisions in
    practice; anything not numeric is treated as newer, the API's rule for opaque versions)."""
    a = str((new.get("metadata") or {}).get("resourceVersion") or "")
    b = str((old.get("metadata") or {}).get("resourceVersion") or "")
    return a.isdigit() and b.isdigit() and int(a) < int(b)
