"""Every error the HTTP API can answer with, one exception type per machine-readable code.

Code raises these; one handler (`error_response`) renders them as
`{"error": CODE, "message": ...}` with the type's HTTP status and headers. Clients branch on
`error`, never on the message, so messages may improve without breaking anyone. Messages
never echo user input back (no email, no password, no token).
"""

from __future__ import annotations

import math
from typing import ClassVar

from starlette.responses import JSONResponse


class PhoenixError(Exception):
    """Base of all API errors: a code, an HTTP status and a human-readable message."""

    code: ClassVar[str] = "INTERNAL_ERROR"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "Internal error."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)

    def headers(self) -> dict[str, str]:
        return {}


class RetryableError(PhoenixError):
    """An error the client may retry after `retry_after` seconds (sent as `Retry-After`)."""

    def __init__(self, message: str | None = None, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


# --- 400: the request itself is wrong ---
class BadRequest(PhoenixError):
    code = "BAD_REQUEST"
    status = 400
    default_message = "The request is not valid."


class InvalidJSON(BadRequest):
    code = "INVALID_JSON"
    default_message = "The request body is not valid UTF-8 JSON."


class InvalidBody(BadRequest):
    code = "INVALID_BODY"
    default_message = "The request body must be a JSON object."


class BodyTooLarge(BadRequest):
    code = "BODY_TOO_LARGE"
    default_message = "The request body is too large."


class MissingField(BadRequest):
    code = "MISSING_FIELD"
    default_message = "A required field is missing or empty."


class InvalidFieldType(BadRequest):
    code = "INVALID_FIELD_TYPE"
    default_message = "A field has the wrong type; email and password must be strings."


class InvalidEmail(BadRequest):
    code = "INVALID_EMAIL"
    default_message = "The email address is not valid."


class PasswordTooLong(BadRequest):
    code = "PASSWORD_TOO_LONG"
    default_message = "The password is too long."


class RequestTimeout(PhoenixError):
    """The body did not arrive in time (a slow or stalled client); the connection is closed."""

    code = "REQUEST_TIMEOUT"
    status = 408
    default_message = "The request body was not received in time."

    def headers(self) -> dict[str, str]:
        return {"Connection": "close"}


class UnsupportedMediaType(PhoenixError):
    code = "UNSUPPORTED_MEDIA_TYPE"
    status = 415
    default_message = "Send the body as application/json."


# --- 401/403/404/405: who you are, what exists ---
class InvalidCredentials(PhoenixError):
    """Wrong password, unknown email and disabled account all look exactly like this."""

    code = "INVALID_CREDENTIALS"
    status = 401
    default_message = "Invalid email or password."


class SessionRequired(PhoenixError):
    code = "SESSION_REQUIRED"
    status = 401
    default_message = "Send a session token as 'Authorization: Bearer <token>' or in the session cookie."

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="phoenix"'}


class InvalidSession(PhoenixError):
    """Unknown, expired, revoked or forged token, or the user was disabled or deleted."""

    code = "INVALID_SESSION"
    status = 401
    default_message = "The session is invalid, expired or revoked."

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="phoenix", error="invalid_token"'}


class AdminUnauthorized(PhoenixError):
    code = "ADMIN_UNAUTHORIZED"
    status = 401
    default_message = "A valid admin token is required: 'Authorization: Bearer <PHOENIX_ADMIN_TOKEN>'."

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="phoenix-admin"'}


class AdminDisabled(PhoenixError):
    code = "ADMIN_API_DISABLED"
    status = 403
    default_message = "The admin API is disabled: PHOENIX_ADMIN_TOKEN is not set."


class UserNotFound(PhoenixError):
    code = "USER_NOT_FOUND"
    status = 404
    default_message = "No user with that id."


class NotFound(PhoenixError):
    code = "NOT_FOUND"
    status = 404
    default_message = "No such route."


class MethodNotAllowed(PhoenixError):
    code = "METHOD_NOT_ALLOWED"
    status = 405
    default_message = "Method not allowed on this route."


# --- 429/503: try again later ---
class Throttled(RetryableError):
    code = "THROTTLED"
    status = 429
    default_message = "Too many failed attempts; wait before trying again."


class DatabaseUnavailable(RetryableError):
    code = "DATABASE_UNAVAILABLE"
    status = 503
    default_message = "The database is unavailable; try again shortly."


class PoolExhausted(RetryableError):
    code = "POOL_EXHAUSTED"
    status = 503
    default_message = "All database connections are busy; try again shortly."


class Overloaded(RetryableError):
    code = "OVERLOADED"
    status = 503
    default_message = "Too many logins are waiting for password hashing; try again shortly."


class InternalError(PhoenixError):
    code = "INTERNAL_ERROR"
    status = 500
    default_message = "Internal error."


ALL_ERRORS: tuple[type[PhoenixError], ...] = (
    InvalidJSON,
    InvalidBody,
    BodyTooLarge,
    MissingField,
    InvalidFieldType,
    InvalidEmail,
    PasswordTooLong,
    RequestTimeout,
    UnsupportedMediaType,
    InvalidCredentials,
    SessionRequired,
    InvalidSession,
    AdminUnauthorized,
    AdminDisabled,
    UserNotFound,
    NotFound,
    MethodNotAllowed,
    Throttled,
    DatabaseUnavailable,
    PoolExhausted,
    Overloaded,
    InternalError,
)


def error_response(exc: PhoenixError) -> JSONResponse:
    """The one place an error becomes an HTTP response."""
    headers = {"Cache-Control": "no-store", **exc.headers()}
    return JSONResponse({"error": exc.code, "message": exc.message}, status_code=exc.status, headers=headers)
