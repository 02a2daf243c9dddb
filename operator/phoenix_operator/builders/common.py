"""Shared pieces of every child object: names, labels, owner reference, security contexts, hashes.

Builders are pure: (owner identity, typed spec, computed values) in → object dict out. They never
call the API, so each is unit-tested as data and the reconciler just applies what they return.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

GROUP = "auth.phoenix.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "PhoenixAuth"
PLURAL = "phoenixauths"
FIELD_MANAGER = "phoenix-operator"

ANNOTATION_CONFIG_HASH = f"{GROUP}/config-hash"
ANNOTATION_MIGRATION_HASH = f"{GROUP}/migration-hash"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "phoenix-operator"
# The one label the operator's Secret watch selects (server-side): it puts it on every Secret a
# PhoenixAuth references and on the Secrets it generates, and sees no other Secret.
LABEL_WATCHED_SECRET = f"{GROUP}/watched"
WATCHED_SECRET = "true"  # noqa: S105 - a label value, not a password


@dataclass(frozen=True)
class Owner:
    """Identity of the PhoenixAuth that owns the children (what ownerReferences need)."""

    name: str
    namespace: str
    uid: str

    @classmethod
    def from_body(cls, body: Any) -> Owner:
        meta = body["metadata"]
        return cls(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])

    # --- child names (one place so tests, e2e and docs agree) ---
    @property
    def auth_name(self) -> str:
        return self.name

    @property
    def config_name(self) -> str:
        return f"{self.name}-config"

    @property
    def redis_name(self) -> str:
        return f"{self.name}-redis"

    @property
    def redis_secret_name(self) -> str:
        return f"{self.name}-redis-auth"

    @property
    def admin_service_name(self) -> str:
        return f"{self.name}-admin"

    @property
    def keys_secret_name(self) -> str:
        return f"{self.name}-phoenix-keys"

    @property
    def rule_name(self) -> str:
        return f"{self.name}-alerts"


def owner_reference(owner: Owner) -> dict[str, Any]:
    """ownerReference with controller=true so the garbage collector deletes children with the owner."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def labels(owner: Owner, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "phoenix-auth",
        "app.kubernetes.io/instance": owner.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "phoenix",
        LABEL_MANAGED_BY: MANAGED_BY,
    }


def selector(owner: Owner, component: str) -> dict[str, str]:
    """Selector labels: a stable subset (Deployment selectors are immutable)."""
    return {
        "app.kubernetes.io/name": "phoenix-auth",
        "app.kubernetes.io/instance": owner.name,
        "app.kubernetes.io/component": component,
    }


def metadata(owner: Owner, name: str, component: str, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner, component),
        "ownerReferences": [owner_reference(owner)],
    }
    meta.update(extra)
    return meta


def pod_security_context(run_as_user: int = 10001) -> dict[str, Any]:
    """Pod-level settings the "restricted" Pod Security Standard requires."""
    return {
        "runAsNonRoot": True,
        "runAsUser": run_as_user,
        "runAsGroup": run_as_user,
        "fsGroup": run_as_user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def stable_hash(*parts: Any, length: int = 16) -> str:
    """Deterministic short digest of JSON-able parts (dict key order does not matter)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]
