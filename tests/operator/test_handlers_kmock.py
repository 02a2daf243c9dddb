"""Handlers against a mock Kubernetes API (KMock): real HTTP, real KubeClient, injected API errors.

A small in-memory API (FakeApi) answers GET/PATCH/DELETE like the API server does for the
calls the operator makes; `faults` makes chosen requests fail with a status code. We assert
what Kopf and the user see: transient errors (409, 5xx, unreachable) raise kopf.TemporaryError
with a growing delay; permanent ones (403, 404, 422) do not retry and land in status.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from collections import defaultdict
from typing import Any

import kmock
import kopf
import pytest
from kubernetes import client as k8s

from phoenix_operator.handlers import Handlers, backoff
from phoenix_operator.kube import KubeClient
from phoenix_operator.reconcile import Reconciler

NS, NAME = "demo", "auth"
PXA = f"/apis/auth.phoenix.dev/v1alpha1/namespaces/{NS}/phoenixauths/{NAME}"
SERVICE = f"/api/v1/namespaces/{NS}/services/{NAME}"
JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"
DB_URL = "postgresql://phoenix:planted-secret-value@db:5432/phoenix"

BODY = {
    "apiVersion": "auth.phoenix.dev/v1alpha1",
    "kind": "PhoenixAuth",
    "metadata": {"name": NAME, "namespace": NS, "uid": "uid-1", "generation": 1},
    "spec": {"database": {"secretRef": {"name": "db"}, "connectionBudget": 100}},
}


class FakeApi:
    """Just enough of the API server for reconcile(): objects by path, SSA, status, faults."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {
            f"/api/v1/namespaces/{NS}/secrets/db": {
                "kind": "Secret",
                "metadata": {"name": "db", "namespace": NS},
                "data": {"DATABASE_URL": base64.b64encode(DB_URL.encode()).decode()},
            },
            PXA: copy.deepcopy(BODY),
        }
        self.faults: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
        self.calls: list[tuple[str, str]] = []
        self.status_patches: list[dict[str, Any]] = []
        self.resource_version = 0  # bumped on every write, like the API server's

    def bump(self, obj: dict[str, Any]) -> None:
        self.resource_version += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.resource_version)

    def fail(self, method: str, path: str, status: int, times: int = 100, message: str = "injected") -> None:
        self.faults[(method, path)] += [(status, message)] * times

    def count(self, method: str, path: str) -> int:
        return sum(1 for c in self.calls if c == (method, path))

    def __call__(self, request: kmock.Request) -> kmock.Response:
        method, path = request.method.name.upper(), request.url.path
        self.calls.append((method, path))
        queue = self.faults.get((method, path)) or self.faults.get((method, path.rsplit("/", 1)[0] + "/*"))
        if queue:
            status, message = queue.pop(0)
            return kmock.Response(
                status=status, payload={"kind": "Status", "code": status, "message": message}
            )
        if method == "GET":
            if path in self.objects:
                return kmock.Response(status=200, payload=self.objects[path])
            items = [o for p, o in self.objects.items() if p.rsplit("/", 1)[0] == path]
            if items or path.endswith(("/jobs", "/deployments")):
                return kmock.Response(status=200, payload={"items": items})
            return kmock.Response(status=404, payload={"kind": "Status", "code": 404, "message": "not found"})
        if method == "PATCH" and path.endswith("/status"):
            patch = json.loads(request.body)
            self.status_patches.append(patch["status"])
            obj = self.objects[path.removesuffix("/status")]
            obj.setdefault("status", {}).update(patch["status"])
            return kmock.Response(status=200, payload=obj)
        if method == "PATCH" and request.headers["Content-Type"] == "application/merge-patch+json":
            if path not in self.objects:  # a merge patch never creates
                return kmock.Response(status=404, payload={"kind": "Status", "code": 404})
            patch = json.loads(request.body)
            assert set(patch) == {"metadata"} and set(patch["metadata"]) == {"labels"}, patch
            obj = self.objects[path]
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(patch["metadata"]["labels"])
            self.bump(obj)
            return kmock.Response(status=200, payload=obj)
        if method == "PATCH":  # server-side apply
            obj = json.loads(request.body)
            assert request.headers["Content-Type"] == "application/apply-patch+yaml"
            assert request.params["fieldManager"] == "phoenix-operator" and request.params["force"] == "true"
            old = self.objects.get(path) or {}
            obj["status"] = old.get("status", {})
            self.bump(obj)
            self.objects[path] = obj
            return kmock.Response(status=200, payload=obj)
        if method == "DELETE":
            self.objects.pop(path, None)
            return kmock.Response(status=200, payload={"kind": "Status", "status": "Success"})
        return kmock.Response(status=405, payload={"message": "unsupported"})


@pytest.fixture()
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture()
def handlers(kmock, api) -> Handlers:
    kmock << api
    config = k8s.Configuration(host=str(kmock.url).rstrip("/"))
    kube = KubeClient(k8s.ApiClient(config), timeout=5, quick_retries=2, retry_pause=0.01)
    return Handlers(Reconciler(kube), debounce=0.0)


pytestmark = pytest.mark.kmock(cls=kmock.RawHandler)


async def run_parent(handlers: Handlers, retry: int = 0) -> None:
    await asyncio.to_thread(handlers.on_parent, body=copy.deepcopy(BODY), retry=retry)


def last_condition(api: FakeApi, type_: str) -> dict[str, Any]:
    return next(c for c in api.status_patches[-1]["conditions"] if c["type"] == type_)


async def test_happy_path_creates_children_and_status(handlers, api):
    await run_parent(handlers)
    assert SERVICE in api.objects
    assert f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}" in api.objects
    assert api.status_patches[-1]["poolPerPod"] == 20
    assert last_condition(api, "MonitoringConfigured")["reason"] == "PrometheusOperatorCRDsMissing"


async def test_one_conflict_is_retried_in_process(handlers, api):
    api.fail("PATCH", SERVICE, 409, times=1)
    await run_parent(handlers)
    assert api.count("PATCH", SERVICE) == 2
    assert SERVICE in api.objects
    assert last_condition(api, "Degraded")["status"] == "False"


@pytest.mark.parametrize("status", [409, 500, 503, 429])
async def test_persistent_transient_errors_go_back_to_kopf_with_backoff(handlers, api, status):
    api.fail("PATCH", SERVICE, status)
    with pytest.raises(kopf.TemporaryError) as info:
        await run_parent(handlers, retry=2)
    assert api.count("PATCH", SERVICE) == 3  # first try + 2 quick retries, then Kopf's backoff
    assert info.value.delay == backoff(2, info.value.delay / 4) and info.value.delay >= 8
    progressing = last_condition(api, "Progressing")
    assert progressing["status"] == "True" and progressing["message"] == "will retry"
    assert last_condition(api, "Degraded")["status"] == "False"


def test_backoff_grows_and_is_capped():
    assert [backoff(r, 2.0) for r in range(4)] == [2.0, 4.0, 8.0, 16.0]
    assert backoff(20, 10.0) == 300.0


@pytest.mark.parametrize(("status", "reason"), [(403, "Forbidden"), (404, "NotFound"), (422, "Invalid")])
async def test_permanent_errors_become_conditions_without_retry(handlers, api, status, reason):
    api.fail("PATCH", SERVICE, status, message=f"services is {reason.lower()} here")
    await run_parent(handlers)  # no exception: Kopf will not retry
    assert api.count("PATCH", SERVICE) == 1
    degraded = last_condition(api, "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == reason
    ready = last_condition(api, "Ready")
    assert ready["status"] == "False" and f"HTTP {status}" in ready["message"]
    assert f"services is {reason.lower()} here" in ready["message"]  # the API server's words reach the user
    assert api.status_patches[-1]["phase"] == "Degraded"


async def test_status_patch_conflict_is_transient(handlers, api):
    api.fail("PATCH", PXA + "/status", 409)
    with pytest.raises(kopf.TemporaryError):
        await run_parent(handlers)


async def test_no_secret_in_any_request_but_the_secret_itself(handlers, api, kmock):
    api.fail("PATCH", SERVICE, 403)
    await run_parent(handlers)
    for request in kmock:
        if "/secrets/" in request.url.path:
            continue
        assert b"planted-secret-value" not in request.body
    assert "planted-secret-value" not in json.dumps(api.status_patches)


def _child(kind: str, status: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {
            "name": NAME,
            "namespace": NS,
            "uid": f"child-{kind}",
            "resourceVersion": str(len(str(status)) + len(str(spec))),
            "ownerReferences": [
                {
                    "apiVersion": "auth.phoenix.dev/v1alpha1",
                    "kind": "PhoenixAuth",
                    "name": NAME,
                    "uid": "uid-1",
                    "controller": True,
                }
            ],
        },
        "spec": spec,
        "status": status,
    }


async def test_child_event_restores_a_deleted_service(handlers, api):
    await run_parent(handlers)
    del api.objects[SERVICE]
    child = _child("Service", {}, {})
    await handlers.on_child(body=child, type="DELETED")
    await handlers.drain()
    assert SERVICE in api.objects


async def test_child_event_of_a_deleted_parent_does_nothing(handlers, api):
    del api.objects[PXA]
    child = _child("Service", {}, {})
    await handlers.on_child(body=child, type="MODIFIED")
    await handlers.drain()
    assert not any(m == "PATCH" for m, _ in api.calls)


async def test_unreachable_api_server_is_transient():
    config = k8s.Configuration(host="http://127.0.0.1:9")  # discard port: connection refused
    kube = KubeClient(k8s.ApiClient(config), timeout=2, quick_retries=1, retry_pause=0.01)
    handlers = Handlers(Reconciler(kube))
    with pytest.raises(kopf.TemporaryError, match="ApiUnreachable"):
        await run_parent(handlers)


async def test_changed_referenced_secret_rolls_the_deployment(handlers, api):
    from phoenix_operator.handlers import secret_refs_index

    await run_parent(handlers)
    dep_path = f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}"

    def config_hash() -> str:
        return api.objects[dep_path]["spec"]["template"]["metadata"]["annotations"][
            "auth.phoenix.dev/config-hash"
        ]

    before = config_hash()
    secret = api.objects[f"/api/v1/namespaces/{NS}/secrets/db"]
    secret["data"]["DATABASE_URL"] = base64.b64encode(b"postgresql://phoenix:rotated@db/phoenix").decode()
    index = {
        key: [owner] for key, owner in secret_refs_index(namespace=NS, name=NAME, spec=BODY["spec"]).items()
    }
    assert index == {(NS, "db"): [NAME]}
    await asyncio.to_thread(handlers.on_secret, body=secret, secret_refs=index, type="MODIFIED")
    assert config_hash() != before
    # An unrelated Secret does nothing.
    calls = len(api.calls)
    other = {"metadata": {"name": "other", "namespace": NS}}
    await asyncio.to_thread(handlers.on_secret, body=other, secret_refs=index, type="MODIFIED")
    assert len(api.calls) == calls


async def test_status_only_churn_of_unread_children_triggers_no_reconcile(handlers, api):
    """HPA/PDB status updates (every 15 s per HPA) must not each cost a full reconcile; a change
    of their content, a deletion, and any Deployment/Job event still reconcile."""
    await run_parent(handlers)

    async def event(body: dict[str, Any], type_: str = "MODIFIED") -> int:
        before = len(api.calls)
        await handlers.on_child(body=body, type=type_)
        await handlers.drain()
        return len(api.calls) - before

    hpa = _child("HorizontalPodAutoscaler", {"currentReplicas": 2}, {"maxReplicas": 4})
    assert await event(hpa) > 0  # first sight: reconcile
    assert await event(_child("HorizontalPodAutoscaler", {"currentReplicas": 3}, {"maxReplicas": 4})) == 0
    assert await event(_child("HorizontalPodAutoscaler", {"currentReplicas": 3}, {"maxReplicas": 9})) > 0
    assert await event(hpa, "DELETED") > 0
    dep = _child("Deployment", {"readyReplicas": 1}, {"replicas": 2})
    assert await event(dep) > 0
    assert await event(_child("Deployment", {"readyReplicas": 2}, {"replicas": 2})) > 0


async def test_unchanged_children_are_not_re_applied_but_edited_ones_are(handlers, api):
    """A child still at the version our last apply returned, with the same desired content, needs
    no apply; a hand edit (new resourceVersion) is put back on the next reconcile."""
    await run_parent(handlers)
    assert api.count("PATCH", SERVICE) == 1
    await run_parent(handlers)
    assert api.count("PATCH", SERVICE) == 1  # nobody touched it: no second apply
    service = api.objects[SERVICE]
    service["spec"]["ports"] = [{"port": 1}]  # edited by hand
    api.bump(service)
    await run_parent(handlers)
    assert api.count("PATCH", SERVICE) == 2
    assert service is not api.objects[SERVICE] and api.objects[SERVICE]["spec"]["ports"][0]["port"] != 1


async def feed_watch(
    handlers: Handlers, api: FakeApi, type_: str | None = None, objects: list[Any] | None = None
) -> None:
    """What Kopf's watches hand the handlers: every object the fake API holds (owner first)."""
    objects = list(api.objects.values()) if objects is None else objects
    for obj in sorted(objects, key=lambda o: o.get("kind") != "PhoenixAuth"):
        body = copy.deepcopy(obj)
        body["metadata"].setdefault("resourceVersion", "0")
        if body.get("kind") == "PhoenixAuth":
            await handlers.on_parent_event(body=body, type=type_)
        elif body.get("kind") == "Secret":
            body.setdefault("apiVersion", "v1")
            # No index: this feed fills the cache and triggers no reconcile.
            await asyncio.to_thread(handlers.on_secret, body=body, secret_refs=None, type=type_)
        else:
            await handlers.on_child(body=body, type=type_)
    await handlers.drain()


async def test_watched_children_are_read_from_the_cache_not_fetched(handlers, api):
    """Once the watches have shown the children, a reconcile GETs none of them and applies none
    that are unchanged; a status-only update (new resourceVersion) is no reason to re-apply, an
    edit of the content is (drift is still put back)."""
    await run_parent(handlers)
    await feed_watch(handlers, api)
    calls = len(api.calls)
    await run_parent(handlers)
    new = api.calls[calls:]
    assert [c for c in new if c[0] == "GET"] == []
    assert [c for c in new if c[0] == "PATCH" and not c[1].endswith("/status")] == []

    dep_path = f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}"
    dep = api.objects[dep_path]
    dep["status"] = {"readyReplicas": 1, "replicas": 2}
    api.bump(dep)
    await handlers.on_child(body=copy.deepcopy(dep), type="MODIFIED")
    await handlers.drain()
    assert api.count("PATCH", dep_path) == 1  # only the first apply

    service = api.objects[SERVICE]
    service["spec"]["ports"] = [{"port": 1}]  # edited by hand
    api.bump(service)
    await handlers.on_child(body=copy.deepcopy(service), type="MODIFIED")
    await handlers.drain()
    assert api.count("PATCH", SERVICE) == 2
    assert api.objects[SERVICE]["spec"]["ports"][0]["port"] != 1


async def test_deleted_children_leave_nothing_in_the_cache(handlers, api):
    await run_parent(handlers)
    await feed_watch(handlers, api)
    assert len(handlers.cache) > 5
    gone = list(api.objects.values())
    api.objects.clear()  # the PhoenixAuth deleted, its children garbage-collected
    await feed_watch(handlers, api, "DELETED", gone)
    assert len(handlers.cache) == 0
    assert handlers.cache.applied(("v1", "Service", NS, NAME)) is None


async def test_a_burst_of_child_events_of_one_owner_costs_one_reconcile(kmock, api):
    kmock << api
    config = k8s.Configuration(host=str(kmock.url).rstrip("/"))
    reconciler = Reconciler(KubeClient(k8s.ApiClient(config), timeout=5, quick_retries=0))
    handlers = Handlers(reconciler, debounce=0.2)
    runs: list[str] = []
    real = reconciler.reconcile
    reconciler.reconcile = lambda body: runs.append(body["metadata"]["name"]) or real(body)  # type: ignore[method-assign]
    kinds = ("Service", "ConfigMap", "PodDisruptionBudget", "NetworkPolicy", "HorizontalPodAutoscaler")
    await asyncio.gather(*(handlers.on_child(body=_child(k, {}, {"n": 1}), type="ADDED") for k in kinds))
    await handlers.drain()
    assert runs == [NAME]


async def test_monitoring_discovery_is_reused_between_reconciles(handlers, api):
    await run_parent(handlers)
    await run_parent(handlers)
    assert api.count("GET", "/apis/monitoring.coreos.com/v1") == 1


async def test_the_referenced_secret_is_labelled_once_by_a_merge_patch_of_its_labels(handlers, api, kmock):
    """Over real HTTP: the DB Secret gets `auth.phoenix.dev/watched=true` (the Secret watch's
    selector) with a merge patch carrying only that label (no data, no SSA ownership of the
    user's Secret), and only once."""
    secret_path = f"/api/v1/namespaces/{NS}/secrets/db"
    await run_parent(handlers)
    assert api.objects[secret_path]["metadata"]["labels"] == {"auth.phoenix.dev/watched": "true"}
    (patch,) = [r for r in kmock if r.method.name.upper() == "PATCH" and r.url.path == secret_path]
    assert json.loads(patch.body) == {"metadata": {"labels": {"auth.phoenix.dev/watched": "true"}}}
    assert b"planted-secret-value" not in patch.body
    await run_parent(handlers)
    assert api.count("PATCH", secret_path) == 1


def test_the_secret_index_holds_every_secret_the_spec_names():
    from phoenix_operator.handlers import secret_refs_index

    spec = {
        "database": {
            "secretRef": {"name": "db"},
            "migrationSecretRef": {"name": "owner"},
            "connectionBudget": 100,
        },
        "redis": {"mode": "external", "external": {"secretRef": {"name": "redis"}}},
        "authService": {
            "extraEnv": [
                {"name": "APP_API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "app", "key": "t"}}}
            ]
        },
    }
    assert secret_refs_index(namespace=NS, name=NAME, spec=spec) == {
        (NS, n): NAME for n in ("db", "owner", "redis", "app")
    }
    assert (
        secret_refs_index(namespace=NS, name=NAME, spec={"database": {}}) == {}
    )  # invalid: reads no Secret, names none
