"""Metrics (names the dashboard and alerts use), health JSON, readiness, and the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from authtestkit import admin_client
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from phoenix_auth.app import ROUTES

pytestmark = pytest.mark.integration

EXPORTED = (
    "phoenix_http_request_duration_seconds_bucket",
    "phoenix_db_query_duration_seconds_bucket",
    "phoenix_cache_requests_total",
    "phoenix_cache_lookups_total",
    "phoenix_db_pool_connections",
    "phoenix_login_attempts_total",
    "phoenix_sessions_validated_total",
    "phoenix_degraded_operations_total",
    "phoenix_cache_invalidations_total",
    "phoenix_dependency_up",
)


async def _exercise(client, user) -> str:
    r = await client.post("/api/auth/phoenix", json={"email": user.email, "password": user.password})
    token = r.json()["session"]["sessionId"]
    await client.post("/api/auth/phoenix", json={"email": user.email, "password": "wrong"})
    for _ in range(3):
        await client.get("/api/auth/session", headers={"Authorization": f"Bearer {token}"})
    return token


async def test_metrics_names_and_labels(app_client, make_user, sql):
    app, client = app_client
    user = make_user()
    await _exercise(client, user)
    sql("UPDATE users SET name = 'x' WHERE id = %s", (user.id,))
    await asyncio.sleep(0.3)  # let the NOTIFY arrive
    await client.get("/no/such/route")
    assert (await client.get("/metrics")).status_code == 404  # the public port has no /metrics
    async with admin_client(app) as admin:
        r = await admin.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    for name in EXPORTED:
        assert re.search(rf"^{name}\{{", text, re.M), name
    labels = re.findall(r"^phoenix_http_request_duration_seconds_count\{([^}]*)\}", text, re.M)
    assert 'method="POST",route="/api/auth/phoenix",status="200"' in labels, labels
    assert re.search(r'phoenix_http_request_duration_seconds_count\{.*route="unmatched".*status="404"', text)
    assert re.search(r'^phoenix_login_attempts_total\{outcome="success"\} 1\.0$', text, re.M)
    assert re.search(r'^phoenix_login_attempts_total\{outcome="invalid_credentials"\} 1\.0$', text, re.M)
    assert re.search(r'^phoenix_sessions_validated_total\{outcome="valid"\} 3\.0$', text, re.M)
    assert re.search(r'^phoenix_cache_requests_total\{layer="l1",result="hit"\} [1-9]', text, re.M)
    hits = float(re.search(r'^phoenix_cache_lookups_total\{result="hit"\} (\S+)$', text, re.M).group(1))
    misses = float(re.search(r'^phoenix_cache_lookups_total\{result="miss"\} (\S+)$', text, re.M).group(1))
    # login: 1 miss (first), 1 hit (wrong password, from L1); 3 session checks: 1 miss then 2 x 2 hits.
    assert (hits, misses) == (5.0, 2.0)
    assert re.search(r'^phoenix_db_query_duration_seconds_count\{query="auth_record"\} [1-9]', text, re.M)
    for state in ("in_use", "idle", "waiting"):
        assert f'phoenix_db_pool_connections{{state="{state}"}}' in text
    assert re.search(r'^phoenix_cache_invalidations_total\{kind="user"\} [1-9]', text, re.M)


async def test_health_has_the_seed_shape(app_client, make_user):
    _, client = app_client
    await _exercise(client, make_user())
    r = await client.get("/api/phoenix/health")
    assert r.status_code == 200
    body = r.json()
    assert body["database"]["healthy"] is True
    assert body["database"]["metrics"]["totalQueries"] > 0
    assert body["database"]["metrics"]["maxConnections"] == 4
    assert {"l1Hits", "l1Misses", "l2Hits", "l2Misses", "hitRatio"} <= set(body["cache"]["metrics"])
    assert body["cache"]["stats"]["listener"]["connected"] is True
    assert body["cache"]["stats"]["redis"] == {"configured": True, "healthy": True}
    assert body["status"] == "healthy"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", body["timestamp"])
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


async def test_openapi_is_valid_lists_every_route_and_matches_responses(app_client, make_user):
    app, client = app_client
    async with admin_client(app) as admin:
        docs = {}
        for listener, c in (("public", client), ("admin", admin)):
            r = await c.get("/openapi.json")
            assert r.status_code == 200
            docs[listener] = doc = r.json()
            validate(doc)
            documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
            assert documented == {(path, m) for path, _, methods in ROUTES[listener] for m in methods}
            # Every documented route answers on this listener; the other listener's do not.
            other = "admin" if listener == "public" else "public"
            for path, _, methods in ROUTES[listener] + ROUTES[other]:
                r = await c.request(methods[0], path.replace("{user_id}", "x"))
                served = r.status_code != 404 or r.json()["error"] != "NOT_FOUND"
                assert served == (path in doc["paths"]), (listener, path, r.status_code)
    doc = docs["public"]
    schemas = doc["components"]["schemas"]

    def check(instance, name):
        schema = {**schemas[name], "$defs": schemas}
        text = json.dumps(schema).replace("#/components/schemas/", "#/$defs/")
        Draft202012Validator(json.loads(text)).validate(instance)

    user = make_user()
    login = await client.post("/api/auth/phoenix", json={"email": user.email, "password": user.password})
    check(login.json(), "LoginResponse")
    token = login.json()["session"]["sessionId"]
    check((await client.get("/api/auth/session", headers={"Authorization": f"Bearer {token}"})).json(),
          "SessionResponse")  # fmt: skip
    check((await client.get("/api/phoenix/health")).json(), "Health")
    for bad in (b"{", b"[]", b'{"email": 1, "password": "x"}'):
        resp = await client.post("/api/auth/login", content=bad, headers={"content-type": "application/json"})
        check(resp.json(), "Error")
    client.cookies.clear()
    check((await client.get("/api/auth/session")).json(), "Error")
    check((await client.get("/nope")).json(), "Error")
    r = await client.delete("/api/auth/session")
    assert r.status_code == 405 and r.json()["error"] == "METHOD_NOT_ALLOWED"
