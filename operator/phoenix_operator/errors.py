"""Typed operator errors: transient ones are retried with backoff, permanent ones become a condition.

The split is the whole retry policy. Kubernetes answers 409 (conflict), 429 and 5xx when it is
busy or racing another writer: retrying later fixes them. 400/403/404-on-create/422 mean the
operator or the spec is wrong: retrying forever would only spam the API server and the logs, so
they land in status (Degraded/Ready=False with the reason) and wait for a spec change.
"""

from __future__ import annotations


class OperatorError(Exception):
    """Base of every error the reconciler raises on purpose."""

    #: Short CamelCase reason used in conditions and as the `kind` label of the error metric.
    reason: str = "OperatorError"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason:
            self.reason = reason


class TransientError(OperatorError):
    """Retry later with backoff (409, 429, 5xx, connection refused, a child not ready yet)."""

    reason = "TransientError"

    def __init__(self, message: str, *, reason: str | None = None, delay: float = 10.0) -> None:
        super().__init__(message, reason=reason)
        self.delay = delay


class PermanentError(OperatorError):
    """Do not retry until the spec (or RBAC) changes; report it in status."""

    reason = "PermanentError"


class SpecInvalid(PermanentError):
    """The spec does not parse into the typed model; `field` is the CRD path to fix."""

    reason = "InvalidSpec"

    def __init__(self, *, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class ImageNotAllowed(SpecInvalid):
    """The spec names an image outside the operator's allow-list (see images.py)."""

    reason = "ImageNotAllowed"


class ChildConflict(PermanentError):
    """An object with a child's name exists and is not owned by this PhoenixAuth (never overwrite it)."""

    reason = "ChildNameConflict"


class PoolDoesNotFit(PermanentError):
    """The (detected) connection budget cannot give every replica its minimum pool."""

    reason = "ConnectionBudgetTooSmall"


class BudgetDetectionFailed(TransientError):
    """Connecting to PostgreSQL to detect the budget failed; maybe it is starting — retry."""

    reason = "BudgetDetectionFailed"


def classify_api_status(status: int, what: str, detail: str = "") -> OperatorError:
    """Map an HTTP status of the Kubernetes API to a transient or permanent error.

    `detail` is the API server's message (never a secret: we never send secret values in
    objects' metadata, only in Secret data, and Secret-apply errors are reported without body).
    """
    text = f"{what}: HTTP {status}" + (f": {detail}" if detail else "")
    if status == 409:
        return TransientError(text, reason="Conflict", delay=2.0)
    if status == 429:
        return TransientError(text, reason="TooManyRequests", delay=5.0)
    if status >= 500 or status == 0:
        return TransientError(text, reason="ApiServerError", delay=10.0)
    if status == 403:
        return PermanentError(text, reason="Forbidden")
    if status == 422:
        return PermanentError(text, reason="Invalid")
    if status == 404:
        return PermanentError(text, reason="NotFound")
    if status == 400:
        return PermanentError(text, reason="BadRequest")
    return PermanentError(text, reason=f"HTTP{status}")
