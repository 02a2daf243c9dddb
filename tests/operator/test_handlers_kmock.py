"""The reconcile, its loop and its wakers against a mock Kubernetes API (KMock): real HTTP, the
real async KubeClient, injected API errors.

A small in-memory API (FakeApi) answers GET/PATCH/DELETE like the API server does for the
calls the operator makes; `faults` makes chosen requests fail with a status code. Kopf's indexes
are played by `Indexes`, fed by the real index functions from what the fake API holds (what
Kopf's watches would show). We assert what the user sees: transient errors (409, 5xx,
unreachable) are retried by the loop with a growing delay; permanent ones (403, 404, 422) are not
retried and land in status; events wake the owner's loop only when something it reads changed.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import gc
import json
import sys
import tracemalloc
import uuid
import weakref
from collections import defaultdict
from typing import Any

import aiohttp
import kmock
import kopf
import pytest

from phoenix_operator.daemon import Loops, Slots, Wakeups, backoff
from phoenix_operator.errors import PermanentError, TransientError
from phoenix_operator.handlers import CHILD_KINDS, Wakers, child_api_kinds, secret_refs_index
from phoenix_operator.kube import ApiSession, KubeClient
from phoenix_operator.reconcile import ObjectState, Outcome, Reconciler
from phoenix_operator.store import Entry, Store, children_index, controller_owner, entry_of, secrets_index

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
        self.resource_version = 1  # bumped on every write; like etcd's, the first write is 2

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
            self.bump(obj)
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
            precondition = obj["metadata"].get("resourceVersion")
            if (
                precondition is not None
                and path in self.objects
                and (self.objects[path]["metadata"].get("resourceVersion") != precondition)
            ):
                return kmock.Response(
                    status=409, payload={"kind": "Status", "code": 409, "reason": "Conflict"}
                )
            old = self.objects.get(path) or {}
            obj["status"] = old.get("status", {})
            self.bump(obj)
            self.objects[path] = obj
            return kmock.Response(status=200, payload=obj)
        if method == "DELETE":
            self.objects.pop(path, None)
            return kmock.Response(status=200, payload={"kind": "Status", "status": "Success"})
        return kmock.Response(status=405, payload={"message": "unsupported"})


class Indexes:
    """Kopf's `children` and `secrets` indexes, rebuilt from the fake API by the real index fns."""

    def __init__(self) -> None:
        self.children: dict[Any, list[Entry]] = {}
        self.secrets: dict[Any, list[Entry]] = {}

    async def feed(self, api: FakeApi) -> None:
        self.children.clear()
        self.secrets.clear()
        plural = {kind: (g, v, p) for g, v, p, kind in CHILD_KINDS}
        for obj in api.objects.values():
            body = copy.deepcopy(obj)
            body["metadata"].setdefault("resourceVersion", "0")
            kind = body.get("kind")
            if kind == "Secret":
                if (body["metadata"].get("labels") or {}).get("auth.phoenix.dev/watched") != "true":
                    continue  # Kopf's watch selects the watched label server-side
                res = kopf.Resource("", "v1", "secrets", kind="Secret")
                got = await secrets_index(
                    body=body, resource=res, namespace=NS, name=body["metadata"]["name"]
                )
                target = self.secrets
            elif kind in plural:
                if (body["metadata"].get("labels") or {}).get(
                    "app.kubernetes.io/managed-by"
                ) != "phoenix-operator":
                    continue
                g, v, p = plural[kind]
                got = await children_index(
                    body=body, resource=kopf.Resource(g, v, p, kind=kind), namespace=NS
                )
                target = self.children
            else:
                continue
            for key, entry in (got or {}).items():
                target.setdefault(key, []).append(entry)


class Stopped:
    """Stands in for Kopf's DaemonStopped flag."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def __bool__(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> Stopped:
        await self._event.wait()
        return self


@pytest.fixture()
def api() -> FakeApi:
    return FakeApi()


async def session_to(url: str, **kw: Any) -> tuple[ApiSession, aiohttp.ClientSession]:
    session = aiohttp.ClientSession()
    api_session = ApiSession()
    api_session.set(session, url)
    return api_session, session


@pytest.fixture()
async def kube(kmock, api):
    kmock << api
    api_session, session = await session_to(str(kmock.url).rstrip("/"))
    yield KubeClient(api_session, timeout=5, quick_retries=2, retry_pause=0.01)
    await session.close()


@pytest.fixture()
def indexes() -> Indexes:
    return Indexes()


@pytest.fixture()
def reconciler(kube, indexes) -> Reconciler:
    return Reconciler(kube, store=Store(indexes.children, indexes.secrets, child_api_kinds()))


pytestmark = pytest.mark.kmock(cls=kmock.RawHandler)


async def reconcile(reconciler: Reconciler, api: FakeApi, state: ObjectState | None = None) -> Outcome:
    return await reconciler.reconcile(copy.deepcopy(api.objects[PXA]), state or ObjectState())


def last_condition(api: FakeApi, type_: str) -> dict[str, Any]:
    return next(c for c in api.status_patches[-1]["conditions"] if c["type"] == type_)


async def test_happy_path_creates_children_and_status(reconciler, api):
    outcome = await reconcile(reconciler, api)
    assert outcome.error is None
    assert SERVICE in api.objects
    assert f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}" in api.objects
    assert api.status_patches[-1]["poolPerPod"] == 20
    assert last_condition(api, "MonitoringConfigured")["reason"] == "PrometheusOperatorCRDsMissing"


async def test_one_conflict_is_retried_in_process(reconciler, api):
    api.fail("PATCH", SERVICE, 409, times=1)
    await reconcile(reconciler, api)
    assert api.count("PATCH", SERVICE) == 2
    assert SERVICE in api.objects
    assert last_condition(api, "Degraded")["status"] == "False"


@pytest.mark.parametrize("status", [409, 500, 503, 429])
async def test_persistent_transient_errors_are_retried_by_the_loop_with_backoff(reconciler, api, status):
    api.fail("PATCH", SERVICE, status)
    outcome = await reconcile(reconciler, api)
    assert isinstance(outcome.error, TransientError)
    # First try + 2 quick retries, then the loop's backoff. A 409 to the first (create-only) apply
    # is read as "the name is taken": a GET finds nothing, so it is applied as usual, 3 times.
    assert api.count("PATCH", SERVICE) == (4 if status == 409 else 3)
    loops = Loops(reconciler, Wakeups(), resync_seconds=300)
    delay, retry = loops.next_wait(outcome, 2)
    assert retry == 3 and delay == backoff(2, outcome.error.delay) and delay >= 8
    assert loops.next_wait(outcome, 3)[0] > delay  # grows
    progressing = last_condition(api, "Progressing")
    assert progressing["status"] == "True" and progressing["message"] == "will retry"
    assert last_condition(api, "Degraded")["status"] == "False"


def test_backoff_grows_and_is_capped():
    assert [backoff(r, 2.0) for r in range(4)] == [2.0, 4.0, 8.0, 16.0]
    assert backoff(20, 10.0) == 300.0


@pytest.mark.parametrize(("status", "reason"), [(403, "Forbidden"), (404, "NotFound"), (422, "Invalid")])
async def test_permanent_errors_become_conditions_without_retry(reconciler, api, status, reason):
    api.fail("PATCH", SERVICE, status, message=f"services is {reason.lower()} here")
    outcome = await reconcile(reconciler, api)
    assert isinstance(outcome.error, PermanentError)
    # No retry: the loop waits for a change (or the slow resync), not a backoff.
    assert Loops(reconciler, Wakeups(), resync_seconds=300).next_wait(outcome, 4) == (300, 0)
    assert api.count("PATCH", SERVICE) == 1
    degraded = last_condition(api, "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == reason
    ready = last_condition(api, "Ready")
    assert ready["status"] == "False" and f"HTTP {status}" in ready["message"]
    assert f"services is {reason.lower()} here" in ready["message"]  # the API server's words reach the user
    assert api.status_patches[-1]["phase"] == "Degraded"


async def test_status_patch_conflict_is_transient(reconciler, api):
    api.fail("PATCH", PXA + "/status", 409)
    outcome = await reconcile(reconciler, api)
    assert isinstance(outcome.error, TransientError)


async def test_no_secret_in_any_request_but_the_secret_itself(reconciler, api, kmock):
    api.fail("PATCH", SERVICE, 403)
    await reconcile(reconciler, api)
    for request in kmock:
        if "/secrets/" in request.url.path:
            continue
        assert b"planted-secret-value" not in request.body
    assert "planted-secret-value" not in json.dumps(api.status_patches)


async def test_unreachable_api_server_is_transient():
    api_session, session = await session_to("http://127.0.0.1:9")  # discard port: connection refused
    try:
        kube = KubeClient(api_session, timeout=2, quick_retries=1, retry_pause=0.01)
        outcome = await Reconciler(kube).reconcile(copy.deepcopy(BODY))
    finally:
        await session.close()
    assert isinstance(outcome.error, TransientError) and outcome.error.reason == "ApiUnreachable"


async def test_not_logged_in_yet_is_transient():
    kube = KubeClient(ApiSession(), quick_retries=0)
    outcome = await Reconciler(kube).reconcile(copy.deepcopy(BODY))
    assert isinstance(outcome.error, TransientError) and "not logged in" in outcome.error.message


async def test_unchanged_children_are_not_re_applied_but_edited_ones_are(reconciler, api):
    """A child still at the content our last apply returned, with the same desired content, needs
    no apply; a hand edit is put back on the next reconcile."""
    state = ObjectState()
    await reconcile(reconciler, api, state)
    assert api.count("PATCH", SERVICE) == 1
    await reconcile(reconciler, api, state)
    assert api.count("PATCH", SERVICE) == 1  # nobody touched it: no second apply
    service = api.objects[SERVICE]
    service["spec"]["ports"] = [{"port": 1}]  # edited by hand
    api.bump(service)
    await reconcile(reconciler, api, state)
    assert api.count("PATCH", SERVICE) == 2
    assert service is not api.objects[SERVICE] and api.objects[SERVICE]["spec"]["ports"][0]["port"] != 1


async def test_children_are_read_from_kopf_indexes_not_fetched(reconciler, api, indexes):
    """Once the watches have shown the children, a reconcile GETs none of them and applies none
    that are unchanged; a status-only update is no reason to re-apply, an edit of the content is
    (drift is still put back)."""
    state = ObjectState()
    await reconcile(reconciler, api, state)
    await indexes.feed(api)
    calls = len(api.calls)
    await reconcile(reconciler, api, state)
    new = api.calls[calls:]
    assert [c for c in new if c[0] == "GET"] == []
    assert [c for c in new if c[0] == "PATCH" and not c[1].endswith("/status")] == []

    dep_path = f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}"
    dep = api.objects[dep_path]
    dep["status"] = {"readyReplicas": 1, "replicas": 2}
    api.bump(dep)
    await indexes.feed(api)
    outcome = await reconcile(reconciler, api, state)
    assert api.count("PATCH", dep_path) == 1  # only the first apply
    assert outcome.status["readyReplicas"] == 1  # the index's status reached the PhoenixAuth's

    service = api.objects[SERVICE]
    service["spec"]["ports"] = [{"port": 1}]  # edited by hand
    api.bump(service)
    await indexes.feed(api)
    await reconcile(reconciler, api, state)
    assert api.count("PATCH", SERVICE) == 2
    assert api.objects[SERVICE]["spec"]["ports"][0]["port"] != 1


def child_gets(api: FakeApi, since: int = 0) -> list[str]:
    """GETs of objects in the namespace but the PhoenixAuth and the user's database Secret."""
    return [
        path
        for method, path in api.calls[since:]
        if method == "GET"
        and f"/namespaces/{NS}/" in path
        and path not in (PXA, f"/api/v1/namespaces/{NS}/secrets/db")
    ]


async def test_a_new_phoenixauth_s_children_are_created_without_a_get_each(reconciler, api):
    """With the index complete and empty of this PhoenixAuth, every child is created by one
    create-only apply: no GET first (half of a new PhoenixAuth's requests used to be these)."""
    outcome = await reconcile(reconciler, api)
    assert outcome.error is None
    assert child_gets(api) == []
    created = [path for method, path in api.calls if method == "PATCH" and not path.endswith("/status")]
    assert len(created) >= 8 and len(set(created)) == len(created)  # one request per child
    assert SERVICE in api.objects


async def test_a_foreign_object_with_a_child_s_name_is_refused_and_left_as_it_was(reconciler, api):
    """The create-only apply is the API server's check: a Service without our owner reference
    (so without our labels, unseen by the index) fails it, is read, refused and left alone;
    later reconciles read it with a GET instead of trying to create it again."""
    foreign = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": NAME, "namespace": NS}}
    foreign["spec"] = {"ports": [{"port": 1}]}
    api.objects[SERVICE] = copy.deepcopy(foreign)
    api.bump(api.objects[SERVICE])
    state = ObjectState()
    for _ in range(2):
        outcome = await reconcile(reconciler, api, state)
        assert outcome.error is not None and outcome.error.reason == "ChildNameConflict"
        assert "not owned by this PhoenixAuth" in str(outcome.error)
    assert api.objects[SERVICE]["spec"] == foreign["spec"] and "ownerReferences" not in foreign["metadata"]
    assert api.count("PATCH", SERVICE) == 1 and api.count("GET", SERVICE) == 2


async def test_an_owned_secret_missing_from_the_index_keeps_its_password(reconciler, api):
    """Our managed-Redis Secret exists but lost its labels (so the index misses it): the
    create-only apply fails instead of writing a new password, the reconcile is retried, reads
    the Secret and keeps the password the Redis pod already uses."""
    path = f"/api/v1/namespaces/{NS}/secrets/{NAME}-redis-auth"
    owner_ref = {"apiVersion": "auth.phoenix.dev/v1alpha1", "kind": "PhoenixAuth", "name": NAME}
    api.objects[path] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": f"{NAME}-redis-auth",
            "namespace": NS,
            "ownerReferences": [owner_ref | {"uid": "uid-1"}],
        },
        "data": {"password": base64.b64encode(b"the-password-in-use").decode()},
    }
    api.bump(api.objects[path])
    state = ObjectState()
    first = await reconcile(reconciler, api, state)
    assert isinstance(first.error, TransientError) and first.error.reason == "ChildNotIndexed"
    assert first.error.delay <= 1.0
    second = await reconcile(reconciler, api, state)
    assert second.error is None
    password = base64.b64decode(api.objects[path]["data"]["password"])
    assert password == b"the-password-in-use"


async def test_an_optional_child_left_off_costs_no_request_once_indexed(reconciler, api, indexes):
    """The auth NetworkPolicy is off by default: with the index complete, its absence needs no
    GET, and an owned one the index shows is deleted when it is switched off again."""
    state = ObjectState()
    await reconcile(reconciler, api, state)
    await indexes.feed(api)
    policy = f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/{NAME}"
    assert policy not in api.objects
    await reconcile(reconciler, api, state)
    assert api.count("GET", policy) == 0
    api.objects[PXA]["spec"]["authService"] = {"networkPolicy": {"enabled": True}}
    assert (await reconcile(reconciler, api, state)).error is None
    assert policy in api.objects
    await indexes.feed(api)
    api.objects[PXA]["spec"]["authService"] = {}
    assert (await reconcile(reconciler, api, state)).error is None
    assert policy not in api.objects and api.count("DELETE", policy) == 1


async def test_monitoring_discovery_is_reused_between_reconciles(reconciler, api):
    await reconcile(reconciler, api)
    await reconcile(reconciler, api)
    assert api.count("GET", "/apis/monitoring.coreos.com/v1") == 1


async def test_the_referenced_secret_is_labelled_once_by_a_merge_patch_of_its_labels(reconciler, api, kmock):
    """Over real HTTP: the DB Secret gets `auth.phoenix.dev/watched=true` (the Secret watch's
    selector) with a merge patch carrying only that label (no data, no SSA ownership of the
    user's Secret), and only once."""
    secret_path = f"/api/v1/namespaces/{NS}/secrets/db"
    await reconcile(reconciler, api)
    assert api.objects[secret_path]["metadata"]["labels"] == {"auth.phoenix.dev/watched": "true"}
    (patch,) = [r for r in kmock if r.method.name.upper() == "PATCH" and r.url.path == secret_path]
    assert json.loads(patch.body) == {"metadata": {"labels": {"auth.phoenix.dev/watched": "true"}}}
    assert b"planted-secret-value" not in patch.body
    await reconcile(reconciler, api)
    assert api.count("PATCH", secret_path) == 1


async def test_the_secret_index_holds_every_secret_the_spec_names():
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
    assert await secret_refs_index(namespace=NS, name=NAME, spec=spec) == {
        (NS, n): NAME for n in ("db", "owner", "redis", "app")
    }
    assert (
        await secret_refs_index(namespace=NS, name=NAME, spec={"database": {}}) == {}
    )  # invalid: reads no Secret, names none


# ---------------------------------------------------------------- wakers: which events wake a loop


def _child(
    kind: str, status: dict[str, Any], spec: dict[str, Any], api_version: str = "v1"
) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
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


async def test_only_events_that_change_what_the_reconcile_reads_wake_the_loop():
    """HPA/PDB status updates (every 15 s per HPA) must not each cost a reconcile; a change of a
    child's content, a deletion, a Deployment's readiness, a spec change still wake its owner;
    the operator's own status patches do not."""
    wakeups = Wakeups()
    flag = wakeups.register((NS, NAME))
    wakers = Wakers(wakeups)
    memos: dict[str, kopf.Memo] = {}

    async def woke(body: dict[str, Any], type_: str | None = "MODIFIED") -> bool:
        flag.clear()
        memo = memos.setdefault(body["kind"], kopf.Memo())
        if body["kind"] == "PhoenixAuth":
            await wakers.on_phoenixauth(body=body, type=type_, memo=memo)
        else:
            # Kopf indexes the event before it calls the handler; the handler reads that entry.
            children = {} if type_ == "DELETED" else {(NS, NAME): [entry_of(body)]}
            await wakers.on_child(body=body, type=type_, memo=memo, children=children)
        return flag.is_set()

    hpa = _child("HorizontalPodAutoscaler", {"currentReplicas": 2}, {"maxReplicas": 4}, "autoscaling/v2")
    assert not await woke(hpa, None)  # the listing at start-up: the loop's first reconcile covers it
    assert not await woke(
        _child("HorizontalPodAutoscaler", {"currentReplicas": 3}, {"maxReplicas": 4}, "autoscaling/v2")
    )
    assert await woke(
        _child("HorizontalPodAutoscaler", {"currentReplicas": 3}, {"maxReplicas": 9}, "autoscaling/v2")
    )
    assert await woke(hpa, "DELETED")
    assert await woke(_child("Deployment", {"readyReplicas": 1}, {"replicas": 2}, "apps/v1"))
    assert await woke(_child("Deployment", {"readyReplicas": 2}, {"replicas": 2}, "apps/v1"))
    assert not await woke(
        _child("Deployment", {"readyReplicas": 2, "conditions": [{"t": 1}]}, {"replicas": 2}, "apps/v1")
    )
    pxa = copy.deepcopy(BODY)
    assert not await woke(pxa, None)
    pxa["status"] = {"phase": "Ready"}
    assert not await woke(pxa)  # our own status patch
    pxa["metadata"]["generation"] = 2
    assert await woke(pxa)  # a spec change
    other = _child("Service", {}, {})
    other["metadata"]["ownerReferences"] = []
    assert not await woke(other)  # nobody's child


async def test_a_changed_secret_wakes_the_phoenixauths_that_reference_it():
    wakeups = Wakeups()
    mine, theirs = wakeups.register((NS, NAME)), wakeups.register((NS, "other"))
    wakers = Wakers(wakeups)
    refs = {(NS, "db"): [NAME]}
    secret = {"metadata": {"name": "db", "namespace": NS, "labels": {}}, "data": {"K": "dg=="}}
    memo = kopf.Memo()
    await wakers.on_secret(body=secret, type=None, memo=memo, secret_refs=refs)
    assert not mine.is_set()
    secret["data"] = {"K": "dw=="}
    await wakers.on_secret(body=secret, type="MODIFIED", memo=memo, secret_refs=refs)
    assert mine.is_set() and not theirs.is_set()
    mine.clear()
    await wakers.on_secret(body=secret, type="MODIFIED", memo=memo, secret_refs=refs)
    assert not mine.is_set()  # same data: nothing to do
    # Kopf keeps the memo as long as the Secret exists: a digest, not the event's data and labels.
    assert "dw==" not in repr(dict(memo)) and all(not isinstance(v, tuple) for v in memo.values())
    secret["data"]["K"] = "dx=="  # changed in place: a digest still sees it
    await wakers.on_secret(body=secret, type="MODIFIED", memo=memo, secret_refs=refs)
    assert mine.is_set()


# ---------------------------------------------------------------- the loop: one per PhoenixAuth


class Loop:
    """One daemon of `loops` running on a live body, as Kopf runs it."""

    def __init__(self, loops: Loops, body: dict[str, Any]) -> None:
        self.loops, self.body, self.stopped = loops, body, Stopped()
        self.task = asyncio.create_task(loops.run(body=body, stopped=self.stopped))

    async def stop(self) -> float:
        """As Kopf stops a daemon: set its flag, give it a few zero-time cycles to exit, then
        cancel it (cancellation_timeout, handlers.register)."""
        started = asyncio.get_running_loop().time()
        self.stopped.set()
        for _ in range(10):
            await asyncio.sleep(0)
        if not self.task.done():
            self.task.cancel()
        await asyncio.wait([self.task], timeout=5)
        assert self.task.done()
        return asyncio.get_running_loop().time() - started


async def until(check, seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


class CountingReconciler:
    """Counts reconciles; the first can be held to see what arrives meanwhile."""

    def __init__(self, hold_first: bool = False) -> None:
        self.runs = 0
        self.in_flight = self.peak = 0
        self.release = asyncio.Event()
        if not hold_first:
            self.release.set()

    async def reconcile(self, body: Any, state: Any) -> Outcome:
        self.runs += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await self.release.wait()
            await asyncio.sleep(0.01)
        finally:
            self.in_flight -= 1
        return Outcome(status={})


async def test_a_burst_of_wakes_during_a_reconcile_costs_one_more_round():
    rec = CountingReconciler(hold_first=True)
    loops = Loops(rec, Wakeups(), resync_seconds=300, debounce=0.05)  # type: ignore[arg-type]
    loop = Loop(loops, copy.deepcopy(BODY))
    await until(lambda: rec.runs == 1)
    for _ in range(5):  # five child events while the first reconcile runs
        assert loops.wakeups.wake((NS, NAME))
    rec.release.set()
    await until(lambda: rec.runs == 2)
    await asyncio.sleep(0.3)
    assert rec.runs == 2  # coalesced into one round, then idle until the resync
    assert await loop.stop() < 1.0
    assert not loops.wakeups.wake((NS, NAME))  # a stopped loop leaves no flag behind


async def test_a_transient_error_is_retried_after_the_backoff_and_a_wake_retries_at_once():
    class Failing(CountingReconciler):
        async def reconcile(self, body: Any, state: Any) -> Outcome:
            await super().reconcile(body, state)
            return Outcome(status={}, error=TransientError("x", reason="Conflict", delay=0.1))

    rec = Failing()
    loop = Loop(Loops(rec, Wakeups(), resync_seconds=300, debounce=0), copy.deepcopy(BODY))  # type: ignore[arg-type]
    await until(lambda: rec.runs >= 3, seconds=3)  # 0.1 s, then 0.2 s, ... without any event
    runs = rec.runs
    loop.loops.wakeups.wake((NS, NAME))
    await until(lambda: rec.runs > runs, seconds=0.5)
    await loop.stop()


async def test_a_deleted_phoenixauth_is_not_reconciled():
    rec = CountingReconciler()
    body = copy.deepcopy(BODY)
    body["metadata"]["deletionTimestamp"] = "2026-12-04T00:00:00Z"
    loop = Loop(Loops(rec, Wakeups(), resync_seconds=300), body)  # type: ignore[arg-type]
    await asyncio.wait_for(loop.task, 1)
    assert rec.runs == 0


class _Meta(dict):  # a dict that can be weakly referenced
    pass


async def test_a_running_loop_keeps_nothing_of_the_event_it_started_with():
    """Kopf replaces a daemon's live body with every event; what the loop took from the first one
    must not outlive it (a PhoenixAuth's metadata carries its managedFields: at N=1,000 a copy
    per loop was ~1,000 stale metadata trees)."""
    live = copy.deepcopy(BODY)
    first = _Meta(live["metadata"])
    live["metadata"] = first
    seen = weakref.ref(first)
    rec = CountingReconciler()
    loop = Loop(Loops(rec, Wakeups(), resync_seconds=300), live)  # type: ignore[arg-type]
    await until(lambda: rec.runs == 1)
    live["metadata"] = copy.deepcopy(dict(first))  # the next event, as Kopf's _replace_with does
    del first
    gc.collect()
    assert seen() is None, gc.get_referrers(seen())
    await loop.stop()


async def test_at_most_concurrency_reconciles_run_at_once():
    rec = CountingReconciler(hold_first=True)
    loops = Loops(rec, Wakeups(), resync_seconds=300, concurrency=3)  # type: ignore[arg-type]
    bodies = []
    for i in range(10):
        body = copy.deepcopy(BODY)
        body["metadata"]["name"] = f"pxa-{i}"
        bodies.append(body)
    running = [Loop(loops, b) for b in bodies]
    await until(lambda: rec.runs == 3)
    await asyncio.sleep(0.1)
    assert rec.runs == 3 and rec.peak == 3  # the other seven wait their turn
    rec.release.set()
    await until(lambda: rec.runs == 10)
    assert rec.peak == 3
    await asyncio.gather(*(loop.stop() for loop in running))


class OrderReconciler(CountingReconciler):
    """Also records which PhoenixAuth each reconcile was of, in the order they started."""

    def __init__(self) -> None:
        super().__init__(hold_first=True)
        self.order: list[str] = []

    async def reconcile(self, body: Any, state: Any) -> Outcome:
        self.order.append(body["metadata"]["name"])
        return await super().reconcile(body, state)


async def test_an_object_woken_again_is_reconciled_before_objects_created_after_it():
    """A thousand PhoenixAuths created together: one whose Deployment became available must not
    wait for the first rounds of all those created after it to turn Ready."""
    rec = OrderReconciler()
    loops = Loops(rec, Wakeups(), resync_seconds=300, debounce=0, concurrency=2)  # type: ignore[arg-type]
    running = []
    for name in ("a", "b", "c", "d", "e"):
        body = copy.deepcopy(BODY)
        body["metadata"]["name"] = name
        running.append(Loop(loops, body))
        await asyncio.sleep(0)
    await until(lambda: rec.runs == 2)
    assert loops.wakeups.wake((NS, "a"))  # a child of "a" changed during its first round
    rec.release.set()
    await until(lambda: rec.runs == 6)
    again = rec.order.index("a", 1)
    assert sorted(rec.order) == ["a", "a", "b", "c", "d", "e"]
    assert again < rec.order.index("e"), rec.order  # FIFO: a, b, c, d, e, then a again
    await asyncio.gather(*(loop.stop() for loop in running))


class SlotUsers:
    """Tasks that take a place of `slots` in turn and record their names; "holder" keeps its
    place until `gate` is set, so the others queue behind it."""

    def __init__(self, slots: Slots) -> None:
        self.slots = slots
        self.order: list[str] = []
        self.gate = asyncio.Event()

    async def run(self, name: str, first: bool) -> None:
        async with self.slots.hold(first):
            self.order.append(name)
            if name == "holder":
                await self.gate.wait()

    async def start_holder(self) -> asyncio.Task[None]:
        holder = asyncio.create_task(self.run("holder", False))
        await asyncio.sleep(0)
        return holder


async def test_first_rounds_still_get_every_fourth_place_while_objects_keep_coming_back():
    users = SlotUsers(Slots(1, first_every=4))
    holder = await users.start_holder()
    tasks = [asyncio.create_task(users.run(f"first-{i}", True)) for i in range(2)]
    tasks += [asyncio.create_task(users.run(f"again-{i}", False)) for i in range(8)]
    await asyncio.sleep(0)  # all ten wait now
    users.gate.set()
    await asyncio.gather(holder, *tasks)
    # Every fourth freed place goes to a first round while objects keep coming back.
    expected = "holder again-0 again-1 again-2 first-0 again-3 again-4 again-5 first-1 again-6 again-7"
    assert users.order == expected.split()


async def test_a_waiter_cancelled_in_the_queue_does_not_lose_a_place():
    slots = Slots(1)
    users = SlotUsers(slots)
    holder = await users.start_holder()
    gone = asyncio.create_task(users.run("gone", False))
    kept = asyncio.create_task(users.run("kept", True))
    await asyncio.sleep(0)
    gone.cancel()  # the place it waited for is freed right after, before it leaves the queue
    users.gate.set()
    await asyncio.wait_for(asyncio.gather(holder, kept), 1)
    assert users.order == ["holder", "kept"] and gone.cancelled()
    async with asyncio.timeout(1):
        async with slots.hold(True):  # the place came back
            pass


def test_index_entries_of_separately_decoded_events_share_their_repeated_strings():
    """Each watch event is decoded on its own; thousands of entries keep one copy of the label
    keys and values, owner references and namespace they repeat. Secret values are not shared."""
    service = _child("Service", {}, {"ports": []}, "v1")
    service["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "phoenix-operator", "app": "auth-x"}
    raw = json.dumps(service)
    a, b = entry_of(json.loads(raw)), entry_of(json.loads(raw))
    la, lb = a.body["metadata"]["labels"], b.body["metadata"]["labels"]
    assert la == lb and all(x is y for x, y in zip(la.values(), lb.values(), strict=True))
    ra, rb = a.body["metadata"]["ownerReferences"][0], b.body["metadata"]["ownerReferences"][0]
    assert ra["uid"] is rb["uid"] and a.body["metadata"]["namespace"] is b.body["metadata"]["namespace"]
    # Equal owner references are one read-only list, kept while an entry holds it.
    refs = a.body["metadata"]["ownerReferences"]
    assert refs is b.body["metadata"]["ownerReferences"]
    with pytest.raises(TypeError):
        refs.append({})
    with pytest.raises(TypeError):
        refs[0]["uid"] = "changed"
    assert json.loads(json.dumps(a.body)) == json.loads(json.dumps(b.body))
    other = json.loads(raw)
    other["metadata"]["ownerReferences"][0]["uid"] = "another-owner"
    assert entry_of(other).body["metadata"]["ownerReferences"][0]["uid"] == "another-owner"
    held = weakref.ref(refs)
    del a, b, ra, rb, refs
    gc.collect()
    assert held() is None  # no entry holds it: the shared table let it go
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": NS}}
    raw = json.dumps({**secret, "data": {"k": "c2VjcmV0LXZhbHVlLTEyMzQ1Njc4OTA="}})
    sa, sb = entry_of(json.loads(raw)), entry_of(json.loads(raw))
    assert sa.body["data"]["k"] is not sb.body["data"]["k"]


async def test_the_phoenixauth_body_kopf_keeps_for_a_loop_carries_no_managed_fields():
    """Kopf keeps each PhoenixAuth's latest event body for its daemon; the waker drops the
    field-ownership map nothing reads from it (what the loop's reconcile sees is unchanged)."""
    body = copy.deepcopy(BODY)
    body["metadata"]["managedFields"] = [{"manager": "kubectl-create", "fieldsV1": {"f:spec": {}}}]
    live = kopf.Body(body)  # the daemon's live view: it resolves to this very dict
    await Wakers(Wakeups()).on_phoenixauth(body=live, type="MODIFIED", memo=kopf.Memo())
    assert "managedFields" not in body["metadata"]
    assert live["metadata"]["name"] == NAME and live["spec"] == BODY["spec"]


async def test_a_loop_on_the_fake_api_puts_back_a_deleted_service(reconciler, api, indexes):
    """End to end through the loop: a child deleted by hand comes back after the wake of its
    DELETED event; the loop keeps no child of a stopped owner."""
    wakeups = Wakeups()
    loops = Loops(reconciler, wakeups, resync_seconds=300, debounce=0.01)
    loop = Loop(loops, copy.deepcopy(api.objects[PXA]))
    await until(lambda: SERVICE in api.objects)
    await indexes.feed(api)
    deleted = api.objects.pop(SERVICE)
    await indexes.feed(api)
    await Wakers(wakeups).on_child(body=deleted, type="DELETED", memo=kopf.Memo())
    await until(lambda: SERVICE in api.objects)
    assert await loop.stop() < 1.0


async def test_the_status_written_is_kept_only_until_the_watch_shows_it(reconciler, api):
    """A reconcile that starts from a body older than its own last status patch starts from that
    patch (the watch lags); once a body shows the patch, the loop keeps no copy of the status
    beside the body (one status per PhoenixAuth in memory, not two)."""
    state = ObjectState()
    stale = copy.deepcopy(api.objects[PXA])
    await reconciler.reconcile(stale, state)
    assert state.status is not None
    await reconciler.reconcile(copy.deepcopy(stale), state)  # the watch has not shown our patch yet
    assert state.status is not None
    await reconcile(reconciler, api, state)  # it has
    assert state.status is None


async def test_the_status_copy_goes_when_the_watch_shows_the_patch_not_at_the_next_reconcile(reconciler, api):
    """Status patches wake no loop, so the next reconcile can be a resync away (5 minutes by
    default): the PhoenixAuth's own watch event, which wakes nothing, drops the copy at once."""
    wakeups = Wakeups()
    state = ObjectState()
    wakeups.register((NS, NAME), state)
    wakers, memo = Wakers(wakeups), kopf.Memo()
    stale = copy.deepcopy(api.objects[PXA])
    await wakers.on_phoenixauth(body=copy.deepcopy(stale), type="ADDED", memo=memo)
    await reconciler.reconcile(stale, state)
    assert state.status is not None
    await wakers.on_phoenixauth(body=copy.deepcopy(stale), type="MODIFIED", memo=memo)  # an older event
    assert state.status is not None
    flag = wakeups.register((NS, NAME), state)
    await wakers.on_phoenixauth(body=copy.deepcopy(api.objects[PXA]), type="MODIFIED", memo=memo)  # our patch
    assert state.status is None
    assert not flag.is_set()  # and it woke nothing


async def test_index_entries_of_a_thousand_phoenixauths_stay_small(reconciler, api):
    """Kopf keeps an index entry per child for the object's whole life: a dozen per PhoenixAuth,
    ~12,000 at N=1,000. Each must cost well under a kilobyte (slim bodies as dicts cost ~1.2 KB
    an entry; flat entries ~0.7)."""
    await reconciler.reconcile(copy.deepcopy(api.objects[PXA]), ObjectState())
    children = [o for o in api.objects.values() if controller_owner(o) is not None]
    assert len(children) >= 8
    raws = []
    for i in range(100):  # 100 PhoenixAuths' children, each event decoded on its own
        for child in children:
            body = copy.deepcopy(child)
            meta = body["metadata"]
            meta.update(name=f"{meta['name']}-{i}", uid=str(uuid.uuid4()), resourceVersion=str(10_000 + i))
            meta["labels"] = {**(meta.get("labels") or {}), "app.kubernetes.io/instance": f"{NAME}-{i}"}
            for ref in meta["ownerReferences"]:
                ref.update(name=f"{NAME}-{i}", uid=f"owner-{i}")
            raws.append(json.dumps(body))
    gc.collect()
    tracemalloc.start()
    try:
        entries = [entry_of(json.loads(raw)) for raw in raws]
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    per_entry = held / len(entries)
    print(f"{per_entry:.0f} bytes an entry ({len(entries)} entries)")
    assert per_entry < 900
    assert entries[0].body["metadata"]["name"] == children[0]["metadata"]["name"] + "-0"


async def test_a_sleeping_loop_holds_no_task_but_its_own():
    """A thousand loops sleep between reconciles; each holds its Kopf daemon task and nothing
    else running (a waiter task per flag and per stop flag was ~2 KB a loop). Wakes still end
    the sleep at once."""
    wakeups = Wakeups()
    rec = CountingReconciler()
    loops = Loops(rec, wakeups, resync_seconds=300, debounce=0.01)  # type: ignore[arg-type]
    bodies = []
    for i in range(20):
        body = copy.deepcopy(BODY)
        body["metadata"]["name"] = f"pxa-{i}"
        bodies.append(body)
    before = len(asyncio.all_tasks())
    running = [Loop(loops, b) for b in bodies]
    await until(lambda: rec.runs == 20)
    await asyncio.sleep(0.05)
    assert len(asyncio.all_tasks()) - before == 20
    assert wakeups.wake((NS, "pxa-3"))
    await until(lambda: rec.runs == 21, seconds=1.0)
    await asyncio.gather(*(loop.stop() for loop in running))


async def test_the_live_body_keeps_its_status_as_compact_text_and_the_reconcile_reads_it(reconciler, api):
    """Kopf keeps each PhoenixAuth's latest event for its loop; once the loop runs, the event's
    status (~8 KB of dicts at rest) is kept as JSON instead (~2.6 KB), and a reconcile starts from
    it as it did from the body: an unchanged object costs no status patch."""
    wakeups = Wakeups()
    state = ObjectState()
    wakeups.register((NS, NAME), state)
    wakers = Wakers(wakeups)
    await reconcile(reconciler, api, state)
    written = copy.deepcopy(api.objects[PXA])
    assert written["status"]["conditions"]
    event = copy.deepcopy(written)
    await wakers.on_phoenixauth(body=kopf.Body(event), type="MODIFIED", memo=kopf.Memo())
    assert event["status"] == {}  # the dict Kopf keeps for the loop holds nothing
    assert state.last_status(event) == written["status"]
    patches = len(api.status_patches)
    await reconciler.reconcile(event, state)
    assert len(api.status_patches) == patches
    # A later event the waker has not reached yet is read from the body itself.
    newer = copy.deepcopy(written)
    newer["status"]["message"] = "from the body"
    assert state.last_status(newer)["message"] == "from the body"


def _deep_size(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes of `obj` and the dicts, lists, tuples and strings it holds (each counted once)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(_deep_size(k, seen) + _deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, list | tuple):
        size += sum(_deep_size(v, seen) for v in obj)
    return size


async def test_what_a_loop_remembers_of_its_applies_stays_small(reconciler, api):
    """A loop remembers, per child, what its last apply sent and got back, for the PhoenixAuth's
    whole life (a dozen children): under 350 bytes a child (a tuple of two digests cost ~420)."""
    state = ObjectState()
    await reconcile(reconciler, api, state)
    assert len(state.applied) >= 8
    per_child = _deep_size(state.applied) / len(state.applied)
    print(f"{per_child:.0f} bytes a child")
    assert per_child < 350
    writes = sum(1 for method, _ in api.calls if method in ("PATCH", "POST", "PUT"))
    await reconcile(reconciler, api, state)  # nothing changed: what it remembers still matches
    assert sum(1 for method, _ in api.calls if method in ("PATCH", "POST", "PUT")) == writes
