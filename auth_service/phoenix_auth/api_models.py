"""The HTTP API's request and response bodies as pydantic models: the one source of their shape.

openapi.py generates the documents' schemas from these models (and the error codes from
errors.py), so a field added, renamed or made optional here changes the served /openapi.json, the
TypeScript client's generated types (clients/phoenix-client/scripts/gen.py) and the fuzzer's
response checks together. The endpoints build their bodies with these models, except where a
hot path renders bytes itself (`app.session_json`, a test holds it byte-identical to
`SessionResponse`) or the body is made in login.py (`LoginResult.body`, validated against
`LoginResponse` by the tests against the live service).

Field names are the wire's camelCase (`alias`), attributes snake_case. A field that defaults to
None is optional: absent from the wire when not set, never null (openapi.py documents it so);
`T | None` without a default is a field always sent that may be null. Some fields the service
always sends are optional here because the published documents never promised them and clients
build these objects in their own tests (the session's `performance`, the health report's
`status` and `throttle`). The password's upper bound
is a setting (PHOENIX_MAX_PASSWORD_BYTES) and a byte count, so it is applied to the document by
openapi.py, not fixed here; login.py's `parse_credentials` checks bodies and answers each problem
with its own error code (a test holds its verdicts inside this model's schema).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from .errors import ALL_ERRORS
from .login import MAX_EMAIL_LENGTH
from .records import UserRecord
from .sessions import ValidSession

ERROR_CODES: tuple[str, ...] = tuple(sorted({e.code for e in ALL_ERRORS}))


def _known_code(code: str) -> str:
    if code not in ERROR_CODES:
        raise ValueError(f"{code!r} is not in the error registry (errors.ALL_ERRORS)")
    return code


class Model(BaseModel):
    """Objects named by their wire (camelCase) names. Validation refuses unknown fields, so a test
    that validates a live answer fails when the service sends a field the model lacks; the
    documents leave objects open (openapi.py), so clients tolerate fields added later."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True)


# --------------------------------------------------------------------------- requests
class LoginRequest(Model):
    model_config = ConfigDict(extra="ignore")  # other fields are ignored, as login.py does

    email: str = Field(min_length=3, max_length=MAX_EMAIL_LENGTH, json_schema_extra={"format": "email"})
    password: str = Field(min_length=1)


# --------------------------------------------------------------------------- responses
class User(Model):
    """The `user` object of login and session answers (the seed's PhoenixUser shape)."""

    id: str
    email: str
    name: str | None
    role: str
    team_name: str | None = Field(alias="teamName")

    @classmethod
    def of(cls, user: UserRecord) -> User:
        return cls(id=user.id, email=user.email, name=user.name, role=user.role, teamName=user.team_name)


class LoginSession(Model):
    session_id: str = Field(alias="sessionId", description="Opaque token (256 bits).")
    expires_at: int = Field(alias="expiresAt", description="Epoch milliseconds.")
    security_risk: float = Field(alias="securityRisk", ge=0, le=1)


class LoginPerformance(Model):
    total_time: float = Field(alias="totalTime", description="Milliseconds.")
    database_time: float = Field(alias="databaseTime", description="Milliseconds.")
    cache_hits: int = Field(alias="cacheHits", ge=0)


class LoginResponse(Model):
    user: User
    session: LoginSession
    performance: LoginPerformance


class SessionExpiry(Model):
    expires_at: int = Field(alias="expiresAt", description="Epoch milliseconds.")


class SessionPerformance(Model):
    cache_hits: int = Field(alias="cacheHits", ge=0, description="Cache layers that answered (L1/L2).")


class SessionResponse(Model):
    user: User
    session: SessionExpiry
    performance: SessionPerformance | None = None

    @classmethod
    def of(cls, valid: ValidSession) -> SessionResponse:
        return cls(
            user=User.of(valid.user),
            session=SessionExpiry(expiresAt=int(valid.session.expires_at * 1000)),
            performance=SessionPerformance(cacheHits=int(valid.cache_hits)),
        )


class LogoutResponse(Model):
    revoked: bool = Field(description="False when the session was already invalid.")


class RevokedSessions(Model):
    user_id: str = Field(alias="userId")
    revoked: int = Field(description="Live sessions revoked.")


class HealthDatabase(Model):
    healthy: bool
    metrics: dict[str, Any]


class HealthCache(Model):
    metrics: dict[str, Any]
    stats: dict[str, Any]


class HealthThrottle(Model):
    """Trusted proxy ranges set, and this worker's logins from private peers outside them (a
    proxy whose X-Forwarded-For is ignored)."""

    trusted_proxies: int | None = Field(default=None, alias="trustedProxies")
    untrusted_private_peer_logins: int | None = Field(default=None, alias="untrustedPrivatePeerLogins")


class Health(Model):
    """The seed's health report, with this worker's numbers."""

    status: Literal["healthy", "degraded", "unhealthy"] | None = None
    database: HealthDatabase
    cache: HealthCache
    throttle: HealthThrottle | None = None
    timestamp: str = Field(json_schema_extra={"format": "date-time"})


class Liveness(Model):
    status: Literal["ok"]


class Readiness(Model):
    ready: bool = Field(description="PostgreSQL answers and the pod is not draining.")
    draining: bool
    database: bool
    redis: bool | None = Field(description="Null when no Redis is configured.")
    listener: bool = Field(description="The invalidation listener's connection is up.")


ErrorCode = Annotated[
    str, AfterValidator(_known_code), WithJsonSchema({"type": "string", "enum": list(ERROR_CODES)})
]


class Error(Model):
    """Every 4xx and 5xx: clients branch on `error`, never on `message`."""

    error: ErrorCode
    message: str


# The schemas every document publishes under #/components/schemas, by these names; the other
# models above are written inline where they are used.
COMPONENTS: tuple[type[Model], ...] = (LoginRequest, User, LoginResponse, SessionResponse, Health, Error)
