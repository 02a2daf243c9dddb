"""The OpenAPI 3.1 documents served at /openapi.json, written by hand to match app.py exactly.

Every route, request body and response (including each error code a route can return) is listed,
so a property-based fuzzer (schemathesis) can check responses against it. Each listener (public
port, admin port) serves a document of exactly its own routes; which route is on which port is
decided by `app.ROUTES`, which passes the paths in (`app.openapi_document`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .errors import ALL_ERRORS
from .settings import Settings


def _error(description: str, codes: list[str], retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description + " Codes: " + ", ".join(codes) + ".",
        "content": {
            "application/json": {
                "schema": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Error"},
                        {"type": "object", "properties": {"error": {"type": "string", "enum": codes}}},
                    ]
                }
            }
        },
    }
    if retry_after:
        response["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    return response


LISTENER_DESCRIPTIONS = {
    "public": "The public listener (PHOENIX_PORT): login, sessions, logout, health and probes.",
    "admin": (
        "The admin listener (PHOENIX_ADMIN_PORT): the admin API, Prometheus metrics, health and probes. "
        "Keep it off the network users reach."
    ),
}


def document(settings: Settings, listener: str, paths: Iterable[str]) -> dict[str, Any]:
    """The document of one listener, listing exactly `paths` (a KeyError names an undocumented one)."""
    bad_request = _error(
        "The request is malformed.",
        [
            "INVALID_JSON",
            "INVALID_BODY",
            "BODY_TOO_LARGE",
            "MISSING_FIELD",
            "INVALID_FIELD_TYPE",
            "INVALID_EMAIL",
            "PASSWORD_TOO_LONG",
        ],
    )
    unavailable = _error(
        "PostgreSQL is down, every pooled connection is busy, or (login) too many logins wait for "
        "password hashing; retry after the given delay.",
        ["DATABASE_UNAVAILABLE", "POOL_EXHAUSTED", "OVERLOADED"],
        retry_after=True,
    )
    internal = _error("Unexpected server error.", ["INTERNAL_ERROR"])
    session_auth: list[dict[str, list[str]]] = [{"bearerSession": []}, {"cookieSession": []}]
    login_op = {
        "summary": "Log in with email and password",
        "description": (
            "Unknown email, wrong password and disabled account return the same 401. On success a "
            "session cookie (HttpOnly, SameSite=Lax; Secure and named __Host-<PHOENIX_COOKIE_NAME> "
            "unless PHOENIX_COOKIE_SECURE=false) is set and a Server-Timing header is returned."
        ),
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LoginRequest"}}},
        },
        "responses": {
            "200": {
                "description": "Logged in.",
                "headers": {
                    "Set-Cookie": {"schema": {"type": "string"}, "description": "The session cookie."},
                    "Server-Timing": {"schema": {"type": "string"}},
                },
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LoginResponse"}}},
            },
            "400": bad_request,
            "401": _error("Invalid email or password.", ["INVALID_CREDENTIALS"]),
            "415": _error("The body is not JSON.", ["UNSUPPORTED_MEDIA_TYPE"]),
            "408": _error("The body was not received in time.", ["REQUEST_TIMEOUT"]),
            "429": _error("Too many failures for this account or address.", ["THROTTLED"], retry_after=True),
            "503": unavailable,
            "500": internal,
        },
    }
    json_ok = {"type": "object"}
    operations: dict[str, Any] = {
        "/api/auth/phoenix": {"post": {**login_op, "operationId": "loginPhoenix"}},
        "/api/auth/login": {"post": {**login_op, "operationId": "login"}},
        "/api/auth/session": {
            "get": {
                "operationId": "validateSession",
                "summary": "Validate a session (Bearer token or session cookie)",
                "security": session_auth,
                "responses": {
                    "200": {
                        "description": "The session is valid.",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/SessionResponse"}}
                        },
                    },
                    "401": _error(
                        "No token, or the session is invalid.", ["SESSION_REQUIRED", "INVALID_SESSION"]
                    ),
                    "503": unavailable,
                    "500": internal,
                },
            }
        },
        "/api/auth/logout": {
            "post": {
                "operationId": "logout",
                "summary": "Revoke the current session (idempotent) and clear the cookie",
                "description": "No body, or a JSON one; any other Content-Type is refused with 415.",
                "security": session_auth,
                "responses": {
                    "200": {
                        "description": "Done; `revoked` is false when the session was already invalid.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["revoked"],
                                    "properties": {"revoked": {"type": "boolean"}},
                                }
                            }
                        },
                    },
                    "401": _error("No token was sent.", ["SESSION_REQUIRED"]),
                    "415": _error(
                        "A body that is not JSON (an HTML form cannot log anyone out).",
                        ["UNSUPPORTED_MEDIA_TYPE"],
                    ),
                    "503": unavailable,
                    "500": internal,
                },
            }
        },
        "/api/auth/admin/users/{user_id}/revoke-sessions": {
            "post": {
                "operationId": "revokeUserSessions",
                "summary": "Revoke every session of a user (admin token)",
                "security": [{"adminToken": []}],
                "parameters": [
                    {
                        "name": "user_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "Sessions revoked.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["userId", "revoked"],
                                    "properties": {
                                        "userId": {"type": "string"},
                                        "revoked": {"type": "integer"},
                                    },
                                }
                            }
                        },
                    },
                    "401": _error("Missing or wrong admin token.", ["ADMIN_UNAUTHORIZED"]),
                    "403": _error("The admin API is disabled.", ["ADMIN_API_DISABLED"]),
                    "404": _error("No such user.", ["USER_NOT_FOUND"]),
                    "503": unavailable,
                    "500": internal,
                },
            }
        },
        "/api/phoenix/health": {
            "get": {
                "operationId": "health",
                "summary": "The seed's health report (503 when PostgreSQL is unreachable)",
                "responses": {
                    "200": {
                        "description": "Report.",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}},
                    },
                    "503": {
                        "description": "Report; the database is unreachable.",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}},
                    },
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "liveness",
                "summary": "Liveness",
                "responses": {
                    "200": {"description": "Alive.", "content": {"application/json": {"schema": json_ok}}}
                },
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readiness",
                "summary": "Readiness: PostgreSQL reachable (Redis is optional)",
                "responses": {
                    "200": {"description": "Ready.", "content": {"application/json": {"schema": json_ok}}},
                    "503": {
                        "description": "Not ready.",
                        "content": {"application/json": {"schema": json_ok}},
                    },
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus text exposition",
                "responses": {
                    "200": {
                        "description": "Metrics.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "404": _error("Monitoring disabled.", ["NOT_FOUND"]),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {
                    "200": {"description": "OpenAPI.", "content": {"application/json": {"schema": json_ok}}}
                },
            }
        },
    }
    user = {
        "type": "object",
        "required": ["id", "email", "name", "role", "teamName"],
        "properties": {
            "id": {"type": "string"},
            "email": {"type": "string"},
            "name": {"type": ["string", "null"]},
            "role": {"type": "string"},
            "teamName": {"type": ["string", "null"]},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Phoenix auth service",
            "version": "0.1.0",
            "description": "Cached, pooled login and session validation on PostgreSQL and Redis. "
            + LISTENER_DESCRIPTIONS[listener],
        },
        "servers": [{"url": "/"}],
        "paths": {path: operations[path] for path in paths},
        "components": {
            "schemas": {
                "LoginRequest": {
                    "type": "object",
                    "required": ["email", "password"],
                    "properties": {
                        "email": {"type": "string", "minLength": 3, "maxLength": 254, "format": "email"},
                        "password": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": settings.max_password_bytes,
                        },
                    },
                },
                "User": user,
                "LoginResponse": {
                    "type": "object",
                    "required": ["user", "session", "performance"],
                    "properties": {
                        "user": {"$ref": "#/components/schemas/User"},
                        "session": {
                            "type": "object",
                            "required": ["sessionId", "expiresAt", "securityRisk"],
                            "properties": {
                                "sessionId": {"type": "string", "description": "Opaque token (256 bits)."},
                                "expiresAt": {"type": "integer", "description": "Epoch milliseconds."},
                                "securityRisk": {"type": "number", "minimum": 0, "maximum": 1},
                            },
                        },
                        "performance": {
                            "type": "object",
                            "required": ["totalTime", "databaseTime", "cacheHits"],
                            "properties": {
                                "totalTime": {"type": "number", "description": "Milliseconds."},
                                "databaseTime": {"type": "number", "description": "Milliseconds."},
                                "cacheHits": {"type": "integer", "minimum": 0},
                            },
                        },
                    },
                },
                "SessionResponse": {
                    "type": "object",
                    "required": ["user", "session"],
                    "properties": {
                        "user": {"$ref": "#/components/schemas/User"},
                        "session": {
                            "type": "object",
                            "required": ["expiresAt"],
                            "properties": {"expiresAt": {"type": "integer"}},
                        },
                        "performance": {"type": "object"},
                    },
                },
                "Health": {
                    "type": "object",
                    "required": ["database", "cache", "timestamp"],
                    "properties": {
                        "status": {"type": "string", "enum": ["healthy", "degraded", "unhealthy"]},
                        "database": {
                            "type": "object",
                            "required": ["healthy", "metrics"],
                            "properties": {"healthy": {"type": "boolean"}, "metrics": {"type": "object"}},
                        },
                        "cache": {
                            "type": "object",
                            "required": ["metrics", "stats"],
                            "properties": {"metrics": {"type": "object"}, "stats": {"type": "object"}},
                        },
                        "throttle": {
                            "type": "object",
                            "description": "Trusted proxy ranges set, and this worker's logins from "
                            "private peers outside them (a proxy whose X-Forwarded-For is ignored).",
                            "properties": {
                                "trustedProxies": {"type": "integer"},
                                "untrustedPrivatePeerLogins": {"type": "integer"},
                            },
                        },
                        "timestamp": {"type": "string", "format": "date-time"},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string", "enum": sorted({e.code for e in ALL_ERRORS})},
                        "message": {"type": "string"},
                    },
                },
            },
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
