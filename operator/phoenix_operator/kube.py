"""Kubernetes API access on Kopf's own HTTP stack: server-side apply, get, list, label, delete,
status patch, discovery.

One async path for every kind (a table of apiVersion/kind → URL) keeps the reconciler free of
per-kind client classes and makes PrometheusRule/ServiceMonitor no different from a Service.
Requests go through the aiohttp session the operator's login handler gives Kopf (`ApiSession`):
one login, one connection pool with one limit, for Kopf's watches and our requests alike.
Every API failure is translated into a typed error here (errors.classify_api_status), so the
reconciler only ever sees TransientError/PermanentError. 409/429/5xx get two quick in-process
retries first; what still fails goes back to the object's loop for a backoff retry.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from phoenix_operator import metrics
from phoenix_operator.builders.common import FIELD_MANAGER, GROUP, PLURAL, VERSION
from phoenix_operator.errors import OperatorError, TransientError, classify_api_status

CREATE_ONLY_VERSION = "1"  # an apply precondition no existing object meets (`KubeClient.create`)


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        parts = [base]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name:
            parts.append(name)
        if subresource:
            parts.append(subresource)
        return "/".join(parts)


KINDS: dict[tuple[str, str], Kind] = {
    (k.api_version, k.kind): k
    for k in (
        Kind("v1", "ConfigMap", "configmaps"),
        Kind("v1", "Secret", "secrets"),
        Kind("v1", "Service", "services"),
        Kind("apps/v1", "Deployment", "deployments"),
        Kind("batch/v1", "Job", "jobs"),
        Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
        Kind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
        Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
        Kind("monitoring.coreos.com/v1", "PrometheusRule", "prometheusrules"),
        Kind("monitoring.coreos.com/v1", "ServiceMonitor", "servicemonitors"),
        Kind(f"{GROUP}/{VERSION}", "PhoenixAuth", PLURAL),
    )
}


def kind_of(api_version: str, kind: str) -> Kind:
    return KINDS[(api_version, kind)]


def _api_message(raw: bytes | str | None) -> str:
    """The API server's Status.message (what was wrong), truncated."""
    try:
        return str(json.loads(raw or b"{}").get("message", ""))[:500]
    except (ValueError, AttributeError):
        return ""


class ApiSession:
    """The session of the current login: set by the login handler, replaced on re-login.

    Kopf closes a session when it logs in again (e.g. after a 401), so requests always take the
    latest one; a request in flight on a closed session fails as transient and is retried."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._server = ""

    def set(self, session: aiohttp.ClientSession, server: str) -> None:
        """Credentials travel as the session's default headers (Kopf's login builds them)."""
        self._session, self._server = session, server.rstrip("/")

    def current(self) -> tuple[aiohttp.ClientSession, str]:
        if self._session is None or self._session.closed:
            raise TransientError(
                "not logged in to the Kubernetes API yet", reason="ApiUnreachable", delay=2.0
            )
        return self._session, self._server


class KubeClient:
    """Async requests to the Kubernetes API through the operator's one session."""

    def __init__(
        self,
        session: ApiSession,
        *,
        field_manager: str = FIELD_MANAGER,
        timeout: float = 30.0,
        quick_retries: int = 2,
        retry_pause: float = 0.3,
    ) -> None:
        self.session = session
        self.field_manager = field_manager
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.quick_retries = quick_retries
        self.retry_pause = retry_pause

    # --- the one place that talks HTTP ---
    async def _call(
        self,
        what: str,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
        missing_ok: bool = False,
        conflict_ok: bool = False,
        hide_body_in_errors: bool = False,
    ) -> dict[str, Any] | None:
        verb, _, rest = what.partition(" ")
        kind = "PhoenixAuth/status" if rest.startswith("status of ") else rest.split(" ", 1)[0]
        metrics.API_REQUESTS.labels(verb=verb, kind=kind).inc()
        data = None if body is None else json.dumps(body)
        attempt = 0
        while True:
            err: OperatorError
            try:
                session, server = self.session.current()
                async with session.request(
                    method,
                    server + path,
                    params=query or None,
                    data=data,
                    headers={"Content-Type": content_type, "Accept": "application/json"},
                    timeout=self.timeout,
                ) as response:
                    raw = await response.read()
                    status = response.status
                if 200 <= status < 300:
                    answer: dict[str, Any] = json.loads(raw) if raw else {}
                    return answer
                if (missing_ok and status == 404) or (conflict_ok and status == 409):
                    return None
                detail = "" if hide_body_in_errors else _api_message(raw)
                err = classify_api_status(status, what, detail)
            except TransientError as exc:
                err = exc
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                err = TransientError(f"{what}: {type(exc).__name__}", reason="ApiUnreachable", delay=10.0)
            if isinstance(err, TransientError) and attempt < self.quick_retries:
                attempt += 1
                await asyncio.sleep(self.retry_pause * attempt)
                continue
            raise err

    # --- generic object operations ---
    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        k = kind_of(api_version, kind)
        return await self._call(
            f"get {kind} {namespace}/{name}", "GET", k.path(namespace, name), missing_ok=True
        )

    async def list(
        self, api_version: str, kind: str, namespace: str, label_selector: str = ""
    ) -> list[dict[str, Any]]:
        k = kind_of(api_version, kind)
        query = [("labelSelector", label_selector)] if label_selector else []
        out = await self._call(f"list {kind} in {namespace}", "GET", k.path(namespace), query=query)
        return list((out or {}).get("items") or [])

    async def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply (field manager phoenix-operator, force: we own these fields)."""
        applied = await self._apply("apply", obj)
        return applied or {}  # None only answers a missing_ok or conflict_ok call

    async def create(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        """Server-side apply that only creates: None (one request, no retry) when an object of
        that name exists, whoever owns it.

        The apply carries `metadata.resourceVersion: "1"` as a precondition. The API server
        ignores it when it creates the object and answers 409 Conflict for any existing one (no
        object has resourceVersion 1: etcd's first write is revision 2). A POST would do the same,
        but would record the fields under an Update entry that later applies never prune."""
        meta = {**obj["metadata"], "resourceVersion": CREATE_ONLY_VERSION}
        return await self._apply("create", {**obj, "metadata": meta}, conflict_ok=True)

    async def _apply(
        self, verb: str, obj: Mapping[str, Any], *, conflict_ok: bool = False
    ) -> dict[str, Any] | None:
        k = kind_of(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        return await self._call(
            f"{verb} {obj['kind']} {meta['namespace']}/{meta['name']}",
            "PATCH",
            k.path(meta["namespace"], meta["name"]),
            body=dict(obj),
            query=[("fieldManager", self.field_manager), ("force", "true")],
            content_type="application/apply-patch+yaml",
            conflict_ok=conflict_ok,
            hide_body_in_errors=obj["kind"] == "Secret",
        )

    async def label(
        self, api_version: str, kind: str, namespace: str, name: str, labels: Mapping[str, str]
    ) -> dict[str, Any] | None:
        """Merge-patch labels onto an object we do not own (None when it is gone; a merge patch
        never creates it). Only metadata.labels is sent, so no other field changes hands."""
        k = kind_of(api_version, kind)
        return await self._call(
            f"label {kind} {namespace}/{name}",
            "PATCH",
            k.path(namespace, name),
            body={"metadata": {"labels": dict(labels)}},
            content_type="application/merge-patch+json",
            missing_ok=True,
            hide_body_in_errors=kind == "Secret",
        )

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        k = kind_of(api_version, kind)
        await self._call(
            f"delete {kind} {namespace}/{name}",
            "DELETE",
            k.path(namespace, name),
            body={"propagationPolicy": "Background"},
            missing_ok=True,
        )

    async def patch_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Merge-patch the PhoenixAuth's status subresource (None when the object is gone)."""
        k = kind_of(f"{GROUP}/{VERSION}", "PhoenixAuth")
        return await self._call(
            f"patch status of PhoenixAuth {namespace}/{name}",
            "PATCH",
            k.path(namespace, name, "status"),
            body={"status": dict(status)},
            content_type="application/merge-patch+json",
            missing_ok=True,
        )

    async def has_resources(self, group_version: str, plurals: set[str]) -> bool:
        """API discovery: does the server serve these resources (e.g. monitoring.coreos.com/v1)?"""
        out = await self._call(f"discover {group_version}", "GET", f"/apis/{group_version}", missing_ok=True)
        if not out:
            return False
        served = {r.get("name") for r in out.get("resources") or []}
        return plurals <= served
