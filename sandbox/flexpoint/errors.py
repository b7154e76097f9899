"""The simulator's one exception hierarchy: every error answer is an :class:`ApiError`.

Views raise; one handler in :mod:`sandbox.flexpoint.app` renders the contract's Error body
``{"error": {"code", "message", "details"}}``, so no view formats an error itself.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answer: HTTP status, machine code, human message, optional details."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, details: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The contract's Error object for this error."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


class InvalidRequest(ApiError):
    """The request does not match flexpoint-sync-api.yaml (or is not JSON at all)."""

    status = 400
    code = "invalid_request"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="flexpoint-sandbox"'})


class NotFound(ApiError):
    status = 404
    code = "not_found"


class AccountNotFound(NotFound):
    code = "account_not_found"


class RecordNotFound(NotFound):
    code = "record_not_found"


class StatusNotFound(NotFound):
    code = "status_not_found"


class MethodNotAllowed(ApiError):
    status = 405
    code = "method_not_allowed"


class IdempotencyConflict(ApiError):
    status = 409
    code = "idempotency_key_reused"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class InjectedFault(ApiError):
    """A fault the sandbox was told to inject (5xx or 429); nothing was applied."""

    def __init__(self, status: int, *, retry_after: int | None = None) -> None:
        self.status = status
        self.code = {429: "rate_limited", 503: "unavailable"}.get(status, "internal_error")
        headers = {"Retry-After": str(retry_after)} if status == 429 and retry_after is not None else {}
        reason = "rate limit exceeded" if status == 429 else "server error"
        super().__init__(f"{reason} (injected by the sandbox; nothing was applied)", headers=headers)
