"""Shared fixtures: a sample PhoenixAuth body and an in-memory stand-in for KubeClient
(phoenix_testkit.fake_kube), so reconcile tests check the objects and status a user would see,
without an API server."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from phoenix_operator.builders.common import Owner
from phoenix_testkit import fake_kube

NS = "demo"
NAME = "auth"
UID = "0b1c2d3e-0000-4000-8000-000000000001"
DB_URL = "postgresql://phoenix:s3cret-db-pass@db.example:5432/phoenix"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def make_body(spec: dict[str, Any] | None = None, *, generation: int = 1, status: dict | None = None) -> dict:
    return {
        "apiVersion": "auth.phoenix.dev/v1alpha1",
        "kind": "PhoenixAuth",
        "metadata": {"name": NAME, "namespace": NS, "uid": UID, "generation": generation},
        "spec": spec
        if spec is not None
        else {"database": {"secretRef": {"name": "db"}, "connectionBudget": 100}},
        "status": status or {},
    }


class FakeKube(fake_kube.FakeKube):
    """phoenix_testkit's FakeKube with shortcuts to this module's PhoenixAuth (namespace NS)."""

    # helpers for tests
    def kinds(self) -> set[str]:
        return {k for (k, _, _) in self.objects}

    def obj(self, kind: str, name: str) -> dict[str, Any]:
        return self.objects[(kind, NS, name)]

    def mark_ready(self, kind: str, name: str, status: dict[str, Any]) -> None:
        self.objects[(kind, NS, name)]["status"] = status


@pytest.fixture()
def owner() -> Owner:
    return Owner(name=NAME, namespace=NS, uid=UID)


@pytest.fixture()
def kube() -> FakeKube:
    k = FakeKube()
    k.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db", "namespace": NS},
            "data": {"DATABASE_URL": b64(DB_URL)},
        }
    )
    return k
