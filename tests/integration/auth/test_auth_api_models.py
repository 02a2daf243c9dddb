"""The live service's answers are its models (api_models.py), and the documents it serves are the
ones generated from those models: a field the service sends but the model lacks (or the reverse)
fails here, and so does an answer whose status or error code its document does not list.

Runs a real `phoenix-auth serve` (both listeners, the admin API on)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from authtestkit import ServiceProcess, settings_env
from jsonschema import Draft202012Validator
from pydantic import BaseModel

from phoenix_auth import api_models as m
from phoenix_auth.app import openapi_document
from phoenix_auth.settings import Settings

pytestmark = pytest.mark.integration

ADMIN_TOKEN = "models-test-admin-token-0123456789abcdef"
REVOKE = "/api/auth/admin/users/{user_id}/revoke-sessions"


@pytest.fixture
def service(database_url, redis_server, start_service) -> ServiceProcess:
    return start_service(settings_env(database_url, redis_server.url, PHOENIX_ADMIN_TOKEN=ADMIN_TOKEN))


def _documented(document: dict[str, Any], template: str, method: str, r: httpx.Response) -> dict[str, Any]:
    """The schema `document` gives this answer (its status must be listed; an error's code must be
    in that status's list), ready for jsonschema."""
    responses = document["paths"][template][method]["responses"]
    assert str(r.status_code) in responses, (template, r.status_code, r.text)
    schema = responses[str(r.status_code)]["content"]["application/json"]["schema"]
    if "allOf" in schema:
        assert r.json()["error"] in schema["allOf"][1]["properties"]["error"]["enum"], (template, r.text)
    text = json.dumps({**schema, "$defs": document["components"]["schemas"]})
    return json.loads(text.replace("#/components/schemas/", "#/$defs/"))  # type: ignore[no-any-return]


def test_live_answers_are_their_models_and_match_the_served_documents(service, make_user, monkeypatch):
    for key, value in service.env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    user = make_user()
    checked: list[tuple[str, int]] = []
    with (
        httpx.Client(base_url=service.base_url, timeout=10) as public,
        httpx.Client(base_url=service.admin_url, timeout=10) as admin,
    ):
        docs = {}
        for listener, client in (("public", public), ("admin", admin)):
            docs[listener] = client.get("/openapi.json").json()
            assert docs[listener] == json.loads(json.dumps(openapi_document(settings, listener)))

        def check(
            client: httpx.Client,
            method: str,
            template: str,
            model: type[BaseModel],
            path: str = "",
            **kw: Any,
        ) -> httpx.Response:
            r = client.request(method, path or template, **kw)
            listener = "public" if client is public else "admin"
            Draft202012Validator(_documented(docs[listener], template, method.lower(), r)).validate(r.json())
            model.model_validate(r.json())  # extra="forbid": a field the model lacks fails here
            checked.append((template, r.status_code))
            return r

        login = check(
            public,
            "POST",
            "/api/auth/phoenix",
            m.LoginResponse,
            json={"email": user.email, "password": user.password},
        )
        assert login.status_code == 200
        public.cookies.clear()
        token = login.json()["session"]["sessionId"]
        bearer = {"Authorization": f"Bearer {token}"}
        check(public, "POST", "/api/auth/login", m.Error, json={"email": user.email, "password": "wrong"})
        check(
            public,
            "POST",
            "/api/auth/login",
            m.Error,
            content=b"{",
            headers={"content-type": "application/json"},
        )
        check(public, "POST", "/api/auth/login", m.Error, json={"email": 1, "password": "x"})
        check(
            public, "POST", "/api/auth/login", m.Error, content=b"x", headers={"content-type": "text/plain"}
        )
        assert check(public, "GET", "/api/auth/session", m.SessionResponse, headers=bearer).status_code == 200
        check(public, "GET", "/api/auth/session", m.Error)
        check(public, "GET", "/api/auth/session", m.Error, headers={"Authorization": "Bearer " + "A" * 43})
        for client in (public, admin):
            check(client, "GET", "/api/phoenix/health", m.Health)
            check(client, "GET", "/healthz", m.Liveness)
            check(client, "GET", "/readyz", m.Readiness)
        revoke = REVOKE.format(user_id=user.id)
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        check(admin, "POST", REVOKE, m.Error, revoke, headers={"Authorization": "Bearer wrong"})
        check(admin, "POST", REVOKE, m.Error, REVOKE.format(user_id="no-such-user"), headers=auth)
        assert check(admin, "POST", REVOKE, m.RevokedSessions, revoke, headers=auth).json()["revoked"] == 1
        logout = check(public, "POST", "/api/auth/logout", m.LogoutResponse, headers=bearer)
        assert logout.json() == {"revoked": False}  # revoked by the admin call above
        check(public, "POST", "/api/auth/logout", m.Error)
    statuses = {status for _, status in checked}
    assert {200, 400, 401, 404, 415} <= statuses, checked
