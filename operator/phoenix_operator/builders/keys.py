"""The auth service's two secrets: PHOENIX_ADMIN_TOKEN and PHOENIX_CACHE_SIGNING_KEY.

Without a signing key the service turns its Redis (L2) cache off, and without an admin token its
admin API is off, so the operator hands both to every auth pod: from the user's own Secrets when
the spec names them (`spec.authService.adminTokenSecretRef` / `cacheSigningKeySecretRef`), else
from a Secret it generates once, `<name>-phoenix-keys`, owned by the PhoenixAuth. The reconciler
reads that Secret before applying it and keeps every value it holds: a new key would drop every L2
entry and an admin token rotated behind the team's back would lock their tooling out.

The values reach the pods only as `valueFrom.secretKeyRef`: never in the ConfigMap, the pod spec,
status, events or process arguments.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from typing import Any

from phoenix_operator.builders.common import LABEL_WATCHED_SECRET, WATCHED_SECRET, Owner, metadata
from phoenix_operator.spec import PhoenixAuthSpec, SecretKeySelector

ADMIN_TOKEN = "PHOENIX_ADMIN_TOKEN"  # noqa: S105 - env and key names, not values
CACHE_SIGNING_KEY = "PHOENIX_CACHE_SIGNING_KEY"
KEY_ENV = (ADMIN_TOKEN, CACHE_SIGNING_KEY)
MIN_KEY_BYTES = 32  # the auth service refuses to start with less (settings.MIN_SECRET_BYTES)
# The spec field that can name the user's own Secret for each env.
SPEC_FIELD = {
    ADMIN_TOKEN: "spec.authService.adminTokenSecretRef",
    CACHE_SIGNING_KEY: "spec.authService.cacheSigningKeySecretRef",
}


def new_key() -> str:
    """A fresh value: 48 random bytes, URL-safe base64 (64 characters, 384 bits)."""
    return secrets.token_urlsafe(48)


def user_refs(spec: PhoenixAuthSpec) -> dict[str, SecretKeySelector]:
    """The env names whose value comes from the user's own Secret (the rest are generated)."""
    svc = spec.auth_service
    refs: dict[str, SecretKeySelector | None] = {
        ADMIN_TOKEN: svc.admin_token_secret_ref,
        CACHE_SIGNING_KEY: svc.cache_signing_key_secret_ref,
    }
    return {env: ref for env, ref in refs.items() if ref is not None}


def generated_env(spec: PhoenixAuthSpec) -> tuple[str, ...]:
    """The env names the operator generates a value for (those without a user Secret)."""
    own = user_refs(spec)
    return tuple(env for env in KEY_ENV if env not in own)


def key_env_refs(owner: Owner, spec: PhoenixAuthSpec) -> dict[str, tuple[str, str]]:
    """env name → (Secret name, key) the auth pods read it from."""
    own = user_refs(spec)
    return {
        env: (own[env].name, own[env].key) if env in own else (owner.keys_secret_name, env) for env in KEY_ENV
    }


def build_keys_secret(owner: Owner, values: Mapping[str, str]) -> dict[str, Any]:
    """The generated Secret (`values`: env name → value, as read back or freshly generated)."""
    meta = metadata(owner, owner.keys_secret_name, "auth")
    meta["labels"][LABEL_WATCHED_SECRET] = WATCHED_SECRET  # the operator's Secret watch sees it
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(values.items())},
    }
