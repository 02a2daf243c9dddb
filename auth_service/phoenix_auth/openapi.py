"""The OpenAPI 3.1 documents served at /openapi.json, generated: nothing here retypes a fact.

- Bodies: the schemas come from the pydantic models in api_models.py (`COMPONENTS` are published
  under #/components/schemas, the other models are written inline where they are used).
- Errors: each operation lists the error types it can raise (errors.py); their HTTP statuses,
  codes and whether they carry Retry-After come from those types, and the `Error` enum from the
  registry (`errors.ALL_ERRORS`).
- Routes: each listener (public port, admin port) serves a document of exactly its own routes;
  which route is on which port is decided by `app.ROUTES`, which passes the paths in
  (`app.openapi_document`).
- Settings: the cookie's name and the password's upper bound (PHOENIX_MAX_PASSWORD_BYTES).

What stays written here is prose (summaries, descriptions) and which operation raises what. Every
route, request body and response is listed, so a property-based fuzzer (schemathesis) can check
the service against the document (tests/reliability/test_rel_fuzz.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from . import api_models as m
from .errors import (
    ALL_ERRORS,
    AdminDisabled,
    AdminUnauthorized,
    DatabaseUnavailable,
    InternalError,
    InvalidCredentials,
    InvalidSession,
    NotFound,
    Overloaded,
    PhoenixError,
    PoolExhausted,
    RequestTimeout,
    RetryableError,
    SessionRequired,
    Throttled,
    UnsupportedMediaType,
    UserNotFound,
)
from .settings import Settings

REF = "#/components/schemas/{model}"
Schema = dict[str, Any]

# ----------------------------------------------------------------------------- schemas from models


def _clean(node: Any, defs: dict[str, Schema], keep: frozenset[str]) -> Any:
    """pydantic's JSON Schema as the document writes it.

    - no generated titles; descriptions (from docstrings) on one line;
    - `T | None` as `type: [T, "null"]`; an optional field (default None) as absent, not null;
    - objects left open: `additionalProperties: false` is dropped (the models refuse unknown
      fields when tests validate live answers, but clients must tolerate fields added later); a
      free-form `dict` keeps `additionalProperties: true`, so clients type its keys as unknown;
    - models outside `keep` written inline instead of referenced.
    """
    if isinstance(node, list):
        return [_clean(item, defs, keep) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name not in keep:
            return _clean(defs[name], defs, keep)
        return {"$ref": REF.format(model=name)}
    out: Schema = {}
    for key, value in node.items():
        if key == "title" or (key == "additionalProperties" and value is False):
            continue
        if key == "properties":
            out[key] = {prop: _clean(sub, defs, keep) for prop, sub in value.items()}
        elif key == "description" and isinstance(value, str):
            out[key] = " ".join(value.split())  # a docstring's line breaks
        else:
            out[key] = _clean(value, defs, keep)
    properties: dict[str, Schema] = out.get("properties", {})
    for prop, sub in properties.items():
        if prop not in out.get("required", []) and "default" in sub and sub["default"] is None:
            properties[prop] = _not_null(sub)
    variants = out.get("anyOf")
    if isinstance(variants, list) and all(
        set(v) == {"type"} and isinstance(v["type"], str) for v in variants
    ):
        del out["anyOf"]
        out = {"type": [v["type"] for v in variants], **out}
    return out


def _not_null(schema: Schema) -> Schema:
    """An optional field (default None) as documented: absent when not set, never null."""
    out = {key: value for key, value in schema.items() if key not in ("default", "anyOf")}
    if isinstance(out.get("type"), list):
        kinds = [kind for kind in out["type"] if kind != "null"]
        out["type"] = kinds[0] if len(kinds) == 1 else kinds
    variants = [v for v in schema.get("anyOf", []) if v != {"type": "null"}]
    if len(variants) == 1:
        out = {**variants[0], **out}
    elif variants:
        out["anyOf"] = variants
    return out


def model_schemas(models: Sequence[type[BaseModel]], keep: Iterable[str]) -> dict[str, Schema]:
    """Each model's schema (by class name), references to `keep` left as references."""
    _, top = models_json_schema([(model, "validation") for model in models], ref_template=REF)
    defs: dict[str, Schema] = top.get("$defs", {})
    kept = frozenset(keep)
    return {model.__name__: _clean(defs[model.__name__], defs, kept) for model in models}


INLINE: tuple[type[BaseModel], ...] = (m.LogoutResponse, m.RevokedSessions, m.Liveness, m.Readiness)
COMPONENT_NAMES = frozenset(model.__name__ for model in m.COMPONENTS)


def components(settings: Settings) -> dict[str, Schema]:
    """#/components/schemas of both documents; INLINE models are the paths' inline schemas."""
    schemas = model_schemas(m.COMPONENTS, COMPONENT_NAMES)
    # The bound is a setting; JSON Schema counts characters, login.py counts UTF-8 bytes (a
    # password of that many characters may still be refused as PASSWORD_TOO_LONG, a 400 listed).
    schemas["LoginRequest"]["properties"]["password"]["maxLength"] = settings.max_password_bytes
    return schemas


# ----------------------------------------------------------------------------- responses


class Errors:
    """One documented error status: what it means, and the error types answered with it."""

    def __init__(self, description: str, *types: type[PhoenixError]) -> None:
        self.description = description
        self.types = types
        statuses = {t.status for t in types}
        if len(statuses) != 1:
            raise ValueError(f"one status per documented response, not {sorted(statuses)}")

    @property
    def status(self) -> str:
        return str(self.types[0].status)

    def response(self) -> Schema:
        codes = [t.code for t in self.types]
        response: Schema = {
            "description": self.description + " Codes: " + ", ".join(codes) + ".",
            "content": {
                "application/json": {
                    "schema": {
                        "allOf": [
                            {"$ref": REF.format(model="Error")},
                            {"type": "object", "properties": {"error": {"type": "string", "enum": codes}}},
                        ]
                    }
                }
            },
        }
        if all(issubclass(t, RetryableError) for t in self.types):
            response["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
        return response


@dataclass(frozen=True)
class Ok:
    """A documented non-error answer: its status, description and body."""

    status: int
    description: str
    body: type[BaseModel] | None = None  # a model; None with `media` for a non-JSON body
    media: tuple[str, Schema] | None = None
    headers: dict[str, Schema] = field(default_factory=dict)

    def response(self, inline: dict[str, Schema]) -> Schema:
        response: Schema = {"description": self.description}
        if self.headers:
            response["headers"] = self.headers
        if self.body is not None:
            name = self.body.__name__
            schema = {"$ref": REF.format(model=name)} if name in COMPONENT_NAMES else inline[name]
            response["content"] = {"application/json": {"schema": schema}}
        elif self.media is not None:
            response["content"] = {self.media[0]: {"schema": self.media[1]}}
        return response


Answer = Ok | Errors

BAD_REQUEST = Errors("The request is malformed.", *(e for e in ALL_ERRORS if e.status == 400))
UNAVAILABLE = Errors(
    "PostgreSQL is down, every pooled connection is busy, or (login) too many logins wait for "
    "password hashing; retry after the given delay.",
    DatabaseUnavailable,
    PoolExhausted,
    Overloaded,
)
INTERNAL = Errors("Unexpected server error.", InternalError)


@dataclass(frozen=True)
class Operation:
    operation_id: str
    summary: str
    answers: tuple[Answer, ...]
    description: str | None = None
    security: tuple[str, ...] = ()
    request: type[BaseModel] | None = None
    parameters: tuple[Schema, ...] = ()

    def render(self, inline: dict[str, Schema]) -> Schema:
        op: Schema = {"operationId": self.operation_id, "summary": self.summary}
        if self.description:
            op["description"] = self.description
        if self.security:
            op["security"] = [{scheme: []} for scheme in self.security]
        if self.parameters:
            op["parameters"] = list(self.parameters)
        if self.request is not None:
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": REF.format(model=self.request.__name__)}}
                },
            }
        responses: Schema = {}
        for answer in self.answers:
            if isinstance(answer, Errors):
                responses[answer.status] = answer.response()
            else:
                responses[str(answer.status)] = answer.response(inline)
        op["responses"] = responses
        return op


SESSION_AUTH = ("bearerSession", "cookieSession")


def _login(operation_id: str) -> Operation:
    return Operation(
        operation_id,
        "Log in with email and password",
        description=(
            "Unknown email, wrong password and disabled account return the same 401. On success a "
            "session cookie (HttpOnly, SameSite=Lax; Secure and named __Host-<PHOENIX_COOKIE_NAME> "
            "unless PHOENIX_COOKIE_SECURE=false) is set and a Server-Timing header is returned."
        ),
        request=m.LoginRequest,
        answers=(
            Ok(
                200,
                "Logged in.",
                m.LoginResponse,
                headers={
                    "Set-Cookie": {"schema": {"type": "string"}, "description": "The session cookie."},
                    "Server-Timing": {"schema": {"type": "string"}},
                },
            ),
            BAD_REQUEST,
            Errors("Invalid email or password.", InvalidCredentials),
            Errors("The body is not JSON.", UnsupportedMediaType),
            Errors("The body was not received in time.", RequestTimeout),
            Errors("Too many failures for this account or address.", Throttled),
            UNAVAILABLE,
            INTERNAL,
        ),
    )


def _health() -> Operation:
    return Operation(
        "health",
        "The seed's health report (503 when PostgreSQL is unreachable)",
        answers=(
            Ok(200, "Report.", m.Health),
            Ok(503, "Report; the database is unreachable.", m.Health),
        ),
    )


# Every route of either listener, by path (method, operation).
OPERATIONS: dict[str, tuple[str, Operation]] = {
    "/api/auth/phoenix": ("post", _login("loginPhoenix")),
    "/api/auth/login": ("post", _login("login")),
    "/api/auth/session": (
        "get",
        Operation(
            "validateSession",
            "Validate a session (Bearer token or session cookie)",
            security=SESSION_AUTH,
            answers=(
                Ok(200, "The session is valid.", m.SessionResponse),
                Errors("No token, or the session is invalid.", SessionRequired, InvalidSession),
                UNAVAILABLE,
                INTERNAL,
            ),
        ),
    ),
    "/api/auth/logout": (
        "post",
        Operation(
            "logout",
            "Revoke the current session (idempotent) and clear the cookie",
            description="No body, or a JSON one; any other Content-Type is refused with 415.",
            security=SESSION_AUTH,
            answers=(
                Ok(200, "Done; `revoked` is false when the session was already invalid.", m.LogoutResponse),
                Errors("No token was sent.", SessionRequired),
                Errors("A body that is not JSON (an HTML form cannot log anyone out).", UnsupportedMediaType),
                UNAVAILABLE,
                INTERNAL,
            ),
        ),
    ),
    "/api/auth/admin/users/{user_id}/revoke-sessions": (
        "post",
        Operation(
            "revokeUserSessions",
            "Revoke every session of a user (admin token)",
            security=("adminToken",),
            parameters=(
                {
                    "name": "user_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1},
                },
            ),
            answers=(
                Ok(200, "Sessions revoked.", m.RevokedSessions),
                Errors("Missing or wrong admin token.", AdminUnauthorized),
                Errors("The admin API is disabled.", AdminDisabled),
                Errors("No such user.", UserNotFound),
                UNAVAILABLE,
                INTERNAL,
            ),
        ),
    ),
    "/api/phoenix/health": ("get", _health()),
    "/healthz": ("get", Operation("liveness", "Liveness", answers=(Ok(200, "Alive.", m.Liveness),))),
    "/readyz": (
        "get",
        Operation(
            "readiness",
            "Readiness: PostgreSQL reachable (Redis is optional)",
            answers=(Ok(200, "Ready.", m.Readiness), Ok(503, "Not ready.", m.Readiness)),
        ),
    ),
    "/metrics": (
        "get",
        Operation(
            "metrics",
            "Prometheus text exposition",
            answers=(
                Ok(200, "Metrics.", media=("text/plain", {"type": "string"})),
                Errors("Monitoring disabled.", NotFound),
            ),
        ),
    ),
    "/openapi.json": (
        "get",
        Operation(
            "openapi",
            "This document",
            answers=(Ok(200, "OpenAPI.", media=("application/json", {"type": "object"})),),
        ),
    ),
}

LISTENER_DESCRIPTIONS = {
    "public": "The public listener (PHOENIX_PORT): login, sessions, logout, health and probes.",
    "admin": (
        "The admin listener (PHOENIX_ADMIN_PORT): the admin API, Prometheus metrics, health and probes. "
        "Keep it off the network users reach."
    ),
}


def document(settings: Settings, listener: str, paths: Iterable[str]) -> dict[str, Any]:
    """The document of one listener, listing exactly `paths` (a KeyError names an undocumented one)."""
    inline = model_schemas(INLINE, COMPONENT_NAMES)
    rendered: dict[str, Schema] = {}
    for path in paths:
        method, operation = OPERATIONS[path]
        rendered[path] = {method: operation.render(inline)}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Phoenix auth service",
            "version": "0.1.0",
            "description": "Cached, pooled login and session validation on PostgreSQL and Redis. "
            + LISTENER_DESCRIPTIONS[listener],
        },
        "servers": [{"url": "/"}],
        "paths": rendered,
        "components": {
            "schemas": components(settings),
            "headers": {
                "RetryAfter": {"description": "Seconds to wait.", "schema": {"type": "integer", "minimum": 1}}
            },
            "securitySchemes": {
                "bearerSession": {"type": "http", "scheme": "bearer", "description": "The session token."},
                "cookieSession": {"type": "apiKey", "in": "cookie", "name": settings.session_cookie_name},
                "adminToken": {"type": "http", "scheme": "bearer", "description": "PHOENIX_ADMIN_TOKEN."},
            },
        },
    }
