"""An in-memory stand-in for the operator's KubeClient, for its tests and for the benchmark that
runs its reconcile without an API server (phoenix_bench.control_plane_floor).

FakeKube keeps objects in a dict and implements exactly KubeClient's (async) surface, so a
reconcile against it produces the objects and status a user would see. Error injection (`fail`)
raises the same typed errors KubeClient raises for API failures.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from phoenix_operator.errors import OperatorError


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.status_patches: list[dict[str, Any]] = []
        self.applied: list[dict[str, Any]] = []
        self.deleted: list[tuple[str, str]] = []
        self.labelled: list[tuple[str, str]] = []
        self.monitoring = False
        self.fail: Callable[[str, str, str], OperatorError | None] = lambda verb, kind, name: None

    def _check(self, verb: str, kind: str, name: str) -> None:
        err = self.fail(verb, kind, name)
        if err is not None:
            raise err

    def put(self, obj: dict[str, Any]) -> None:
        self.objects[(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self._check("get", kind, name)
        obj = self.objects.get((kind, namespace, name))
        return copy.deepcopy(obj) if obj else None

    async def list(self, api_version: str, kind: str, namespace: str, label_selector: str = "") -> list[dict]:
        self._check("list", kind, "")
        wanted = dict(part.split("=", 1) for part in label_selector.split(",") if part)
        out = []
        for (k, ns, _), obj in self.objects.items():
            labels = obj["metadata"].get("labels") or {}
            if k == kind and ns == namespace and all(labels.get(a) == b for a, b in wanted.items()):
                out.append(copy.deepcopy(obj))
        return out

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self._check("apply", obj["kind"], obj["metadata"]["name"])
        key = (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        merged = copy.deepcopy(obj)
        old = self.objects.get(key)
        if old is not None and "status" in old:
            merged["status"] = old["status"]
        merged["metadata"].setdefault("generation", 1)
        self.objects[key] = merged
        self.applied.append(copy.deepcopy(obj))
        return copy.deepcopy(merged)

    async def create(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Like KubeClient.create: None when the name is taken."""
        self._check("create", obj["kind"], obj["metadata"]["name"])
        if (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]) in self.objects:
            return None
        return await self.apply(obj)

    async def label(
        self, api_version: str, kind: str, namespace: str, name: str, labels: dict
    ) -> dict | None:
        self._check("label", kind, name)
        obj = self.objects.get((kind, namespace, name))
        if obj is None:
            return None
        obj["metadata"].setdefault("labels", {}).update(labels)
        self.labelled.append((kind, name))
        return copy.deepcopy(obj)

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        self._check("delete", kind, name)
        self.objects.pop((kind, namespace, name), None)
        self.deleted.append((kind, name))

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict | None:
        self._check("patch_status", "PhoenixAuth", name)
        self.status_patches.append(copy.deepcopy(status))
        return {"status": status}

    async def has_resources(self, group_version: str, plurals: set[str]) -> bool:
        return self.monitoring
