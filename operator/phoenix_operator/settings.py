"""The operator's one settings object, read from PHOENIX_OPERATOR_* env once at start-up.

CLI flags (`phoenix-operator --namespace ... --priority ...`) override the env. Peering: Kopf
freezes every operator that shares the highest priority (it is not leader election), so each
replica needs a distinct priority. Unset, the priority is derived from the pod's hostname —
distinct per replica with overwhelming probability — the highest one acts, the others stand by
and take over when its peering record expires (see docs/operator.md).
"""

from __future__ import annotations

import hashlib
import socket
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from phoenix_operator.images import PROJECT_IMAGE_PREFIX, validate_prefixes


def hostname_priority(hostname: str | None = None) -> int:
    """A stable priority in [1, 2**30) from the hostname (the pod name in Kubernetes)."""
    name = hostname or socket.gethostname()
    return 1 + int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % (2**30 - 1)


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PHOENIX_OPERATOR_", extra="ignore", frozen=True)

    kubeconfig: str | None = None  # None: in-cluster config, else KUBECONFIG / ~/.kube/config
    namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list)  # comma-separated in env
    all_namespaces: bool = False
    # Peering: None → derived from the hostname; standalone disables peering (single replica only).
    priority: int | None = Field(default=None, ge=0, le=2**31 - 1)
    peering_name: str = "phoenix-operator"
    standalone: bool = False
    liveness_host: str = "0.0.0.0"  # noqa: S104
    liveness_port: int = Field(default=8080, ge=0, le=65535)  # 0 disables
    metrics_host: str = "0.0.0.0"  # noqa: S104
    metrics_port: int = Field(default=8081, ge=0, le=65535)  # 0 disables
    resync_seconds: float = Field(default=300.0, ge=10, le=86400)  # slow timer: level-based safety net
    # Images PhoenixAuths may run (images.py); comma-separated in env. "*" allows any.
    allowed_image_prefixes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [PROJECT_IMAGE_PREFIX], min_length=1
    )
    # Reconciles running at once (each PhoenixAuth has its loop; the rest wait their turn).
    reconcile_concurrency: int = Field(default=32, ge=1, le=1000)
    detect_timeout: float = Field(default=5.0, gt=0, le=60)
    api_timeout: float = Field(default=30.0, gt=0, le=300)
    log_level: str = "INFO"
    verbose: bool = False

    @field_validator("namespaces", "allowed_image_prefixes", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("allowed_image_prefixes")
    @classmethod
    def _prefixes(cls, value: list[str]) -> list[str]:
        return validate_prefixes(value)

    @property
    def effective_priority(self) -> int:
        return self.priority if self.priority is not None else hostname_priority()

    @property
    def liveness_endpoint(self) -> str | None:
        if not self.liveness_port:
            return None
        return f"http://{self.liveness_host}:{self.liveness_port}/healthz"
