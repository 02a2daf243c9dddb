"""The OpenAPI documents are generated from api_models.py and errors.py: what a client reads in them
is what the models accept and what the error registry says (statuses, codes, Retry-After), and
login.py's hand-written body checks stay inside the documented request schema."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from pydantic import BaseModel, ValidationError

from phoenix_auth import api_models as m
from phoenix_auth.app import ROUTES, openapi_document
from phoenix_auth.errors import ALL_ERRORS, BadRequest, RetryableError
from phoenix_auth.login import parse_credentials
from phoenix_auth.settings import Settings

SETTINGS = Settings(max_password_bytes=64, cookie_name="sid")
DOCS = {listener: openapi_document(SETTINGS, listener) for listener in ("public", "admin")}
BY_CODE = {e.code: e for e in ALL_ERRORS}


def validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A JSON Schema validator for `schema` taken from `document` (its #/components refs resolved)."""
    text = json.dumps({**schema, "$defs": document["components"]["schemas"]})
    return Draft202012Validator(json.loads(text.replace("#/components/schemas/", "#/$defs/")))


def operation_schema(listener: str, path: str, status: str) -> dict[str, Any]:
    (operation,) = DOCS[listener]["paths"][path].values()
    content: dict[str, Any] = operation["responses"][status]["content"]["application/json"]
    return content["schema"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("listener", ["public", "admin"])
def test_documents_are_valid_openapi_and_list_exactly_the_listeners_routes(listener: str) -> None:
    doc = DOCS[listener]
    validate(doc)
    assert sorted(doc["paths"]) == sorted(path for path, _, _ in ROUTES[listener])
    assert doc["components"]["securitySchemes"]["cookieSession"]["name"] == SETTINGS.session_cookie_name
    assert doc["components"]["schemas"]["LoginRequest"]["properties"]["password"]["maxLength"] == 64


@pytest.mark.parametrize("listener", ["public", "admin"])
def test_documented_errors_have_the_registrys_status_codes_and_retry_after(listener: str) -> None:
    """Each error response lists codes whose type answers with exactly that status, and promises
    Retry-After exactly when every listed type sends it."""
    seen = set()
    for path, operations in DOCS[listener]["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                if "allOf" not in schema:
                    continue
                codes = schema["allOf"][1]["properties"]["error"]["enum"]
                assert all(str(BY_CODE[code].status) == status for code in codes), (path, method, status)
                retryable = all(issubclass(BY_CODE[code], RetryableError) for code in codes)
                assert ("Retry-After" in response.get("headers", {})) == retryable, (path, status)
                assert all(code in response["description"] for code in codes)
                seen.update(codes)
    # Every code in the Error enum is the registry's, and the routes document most of them.
    assert DOCS[listener]["components"]["schemas"]["Error"]["properties"]["error"]["enum"] == sorted(BY_CODE)
    assert seen <= set(BY_CODE)


def _examples() -> list[tuple[type[BaseModel], dict[str, Any], str, str, str]]:
    """(model, wire body, listener, path, status) of one valid answer per documented body."""
    user = {"id": "u1", "email": "a@example.com", "name": None, "role": "user", "teamName": "T"}
    health = {
        "status": "healthy",
        "database": {"healthy": True, "metrics": {"totalQueries": 1}},
        "cache": {"metrics": {}, "stats": {"redis": {"configured": True}}},
        "throttle": {"trustedProxies": 0, "untrustedPrivatePeerLogins": 0},
        "timestamp": "2026-12-04T04:00:00.000Z",
    }
    return [
        (
            m.LoginResponse,
            {
                "user": user,
                "session": {"sessionId": "t" * 43, "expiresAt": 1, "securityRisk": 0.0},
                "performance": {"totalTime": 1.5, "databaseTime": 0.5, "cacheHits": 0},
            },
            "public",
            "/api/auth/phoenix",
            "200",
        ),
        (
            m.SessionResponse,
            {"user": user, "session": {"expiresAt": 1}, "performance": {"cacheHits": 2}},
            "public",
            "/api/auth/session",
            "200",
        ),
        (m.LogoutResponse, {"revoked": True}, "public", "/api/auth/logout", "200"),
        (
            m.RevokedSessions,
            {"userId": "u1", "revoked": 3},
            "admin",
            "/api/auth/admin/users/{user_id}/revoke-sessions",
            "200",
        ),
        (m.Health, health, "admin", "/api/phoenix/health", "503"),
        (m.Liveness, {"status": "ok"}, "public", "/healthz", "200"),
        (
            m.Readiness,
            {"ready": False, "draining": True, "database": True, "redis": None, "listener": True},
            "public",
            "/readyz",
            "503",
        ),
        (m.Error, {"error": "THROTTLED", "message": "wait"}, "public", "/api/auth/phoenix", "429"),
    ]


@pytest.mark.parametrize(("model", "body", "listener", "path", "status"), _examples())
def test_model_and_document_accept_and_refuse_the_same_bodies(
    model: type[BaseModel], body: dict[str, Any], listener: str, path: str, status: str
) -> None:
    """A field renamed, retyped or made required in a model is one in the document too: valid bodies
    pass both, a body missing any required field or with a wrong-typed one fails both."""
    check = validator(DOCS[listener], operation_schema(listener, path, status))
    assert model.model_validate(body).model_dump(mode="json", by_alias=True, exclude_unset=True) == body
    check.validate(body)
    for field in body:
        broken = {k: v for k, v in body.items() if k != field}
        required = model.model_fields[_attr(model, field)].is_required()
        assert (not check.is_valid(broken)) == required, field
        with pytest.raises(ValidationError) if required else _nothing():
            model.model_validate(broken)
        retyped = {**body, field: ["not", "this"]}
        assert not check.is_valid(retyped), field
        with pytest.raises(ValidationError):
            model.model_validate(retyped)


def _attr(model: type[BaseModel], wire: str) -> str:
    return next(name for name, f in model.model_fields.items() if (f.alias or name) == wire)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


LOGIN_BODIES: list[object] = [
    {"email": "a@example.com", "password": "pw"},
    {"email": "  A@Example.COM ", "password": "pw", "extra": 1},
    {"email": "a@b", "password": "x"},
    {"email": "ab", "password": "x"},
    {"email": "", "password": "x"},
    {"email": "a@example.com", "password": ""},
    {"email": "a@example.com"},
    {"password": "x"},
    {"email": None, "password": "x"},
    {"email": 1, "password": "x"},
    {"email": "a@example.com", "password": 12},
    {"email": "a@example.com", "password": "p" * 64},
    {"email": "a@example.com", "password": "p" * 65},
    {"email": "a@example.com", "password": "é" * 40},  # 40 characters, 80 bytes
    {"email": "x" * 250 + "@b.co", "password": "x"},
    {"email": "no-at-sign", "password": "x"},
    {"email": "a@@b", "password": "x"},
    {"email": "a b@c.d", "password": "x"},
    {"email": "a@example.com", "password": "\ud800"},
]


@pytest.mark.parametrize("body", LOGIN_BODIES)
def test_login_checks_stay_inside_the_documented_request_schema(body: dict[str, object]) -> None:
    """login.py checks bodies by hand (each problem its own code); whatever it accepts the
    documented LoginRequest accepts, and whatever the document refuses it answers with a 400."""
    documented = validator(DOCS["public"], DOCS["public"]["components"]["schemas"]["LoginRequest"])
    try:
        parse_credentials(body, SETTINGS)
    except BadRequest:
        accepted = False
    else:
        accepted = True
    if accepted:
        assert documented.is_valid(body)
        m.LoginRequest.model_validate(body)
    if not documented.is_valid(body):
        assert not accepted
