"""The simulator's errors: Intacct's ``ia::error`` body, OAuth2's error body, the admin API's."""

from __future__ import annotations

import secrets
from typing import Any

# Intacct-style error ids per code; the exact numbers are not published, only the shape.
_ERROR_IDS = {
    "invalidRequest": "REST-1001",
    "tokenInvalid": "REST-1002",
    "permissionDenied": "REST-1003",
    "notFound": "REST-1004",
    "methodNotAllowed": "REST-1005",
    "conflict": "REST-1009",
    "businessRule": "REST-1022",
    "tooManyRequests": "REST-1029",
    "internalError": "REST-1500",
    "serviceUnavailable": "REST-1503",
    "gatewayTimeout": "REST-1504",
}


class IntacctError(Exception):
    """An error the REST API answers with ``{"ia::result": {"ia::error": {...}}}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error = {
            "code": self.code,
            "message": self.message,
            "errorId": _ERROR_IDS.get(self.code, "REST-1000"),
            "additionalInfo": {
                "messageId": f"IA.{self.code.upper()}",
                "placeholders": {},
                "propertySet": {},
            },
            "supportId": secrets.token_urlsafe(12),
            "details": self.details,
        }
        return {
            "ia::result": {"ia::error": error},
            "ia::meta": {"totalCount": 1, "totalSuccess": 0, "totalError": 1},
        }


def bad_request(message: str) -> IntacctError:
    """A 400 ``invalidRequest`` with the reason."""
    return IntacctError(400, "invalidRequest", message)


class OAuthError(Exception):
    """A token endpoint failure, answered with RFC 6749 §5.2's ``{"error", "error_description"}``."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


class AdminError(Exception):
    """An admin API failure, answered with the project's ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}
