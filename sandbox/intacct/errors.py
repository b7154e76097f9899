"""The simulator's errors: Intacct's ``ia::error`` body, OAuth2's error body, the admin API's."""

from __future__ import annotations

import secrets
from typing import Any

# Error ids per code. Sage publishes REST-1028 (no payload), REST-1043 (not a valid field) and
# REST-1064 (payload contains errors); the others are the simulator's conventions.
_ERROR_IDS = {
    "invalidRequest": "REST-1064",
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
# One body problem: (errorId, messageId). REST-1043/IA.NOT_A_VALID_FIELD is Sage's; the rest are
# conventions of the simulator (Sage does not publish them).
PROBLEMS = {
    "notAValidField": ("REST-1043", "IA.NOT_A_VALID_FIELD"),
    "requiredFieldMissing": ("REST-1040", "IA.REQUIRED_FIELD_MISSING"),
    "valueTooLong": ("REST-1041", "IA.VALUE_EXCEEDS_MAX_LENGTH"),
    "invalidEnumValue": ("REST-1042", "IA.INVALID_ENUM_VALUE"),
    "invalidValue": ("REST-1044", "IA.INVALID_VALUE"),
    "readOnlyField": ("REST-1045", "IA.FIELD_IS_READ_ONLY"),
    "noPayload": ("REST-1028", "IA.REQUEST_REQUIRES_A_PAYLOAD"),
}


def slash_path(path: str) -> str:
    """A body path as Sage's targets write it: ``paymentDetails[0].arInvoice.key`` ->
    ``/paymentDetails/0/arInvoice/key``."""
    return "/" + path.replace("[", ".").replace("]", "").replace(".", "/")


def detail(code: str, message: str, target: str | None, problem: str | None = None) -> dict[str, Any]:
    """One ``details[]`` entry: code, message, errorId, target, additionalInfo."""
    error_id, message_id = PROBLEMS.get(problem or "", (_ERROR_IDS.get(code, "REST-1000"), None))
    return {
        "code": code,
        "message": message,
        "errorId": error_id,
        "target": target,
        "additionalInfo": {
            "messageId": message_id or f"IA.{(problem or code).upper()}",
            "placeholders": {"FIELD": target} if target else {},
            "propertySet": {},
        },
    }


class IntacctError(Exception):
    """An error the REST API answers with ``{"ia::result": {"ia::error": {...}}, "ia::meta": {...}}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        error_id: str | None = None,
        message_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers or {}
        self.error_id = error_id or _ERROR_IDS.get(code, "REST-1000")
        self.message_id = message_id or f"IA.{code.upper()}"

    def body(self) -> dict[str, Any]:
        error = {
            "code": self.code,
            "message": self.message,
            "errorId": self.error_id,
            "additionalInfo": {"messageId": self.message_id, "placeholders": {}, "propertySet": {}},
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


def invalid_payload(problems: list[dict[str, Any]]) -> IntacctError:
    """400 ``invalidRequest`` REST-1064 "Payload contains errors" with one detail per problem."""
    return IntacctError(
        400,
        "invalidRequest",
        "Payload contains errors",
        details=problems,
        error_id="REST-1064",
        message_id="IA.PAYLOAD_CONTAINS_ERRORS",
    )


def not_a_valid_field(name: str, target: str, where: str) -> IntacctError:
    """400 ``invalidRequest`` REST-1043: ``name`` is not a field of ``where``; ``target`` names it."""
    message = f"{name} is not a valid field"
    return IntacctError(
        400,
        "invalidRequest",
        f"{message} of {where}",
        details=[detail("invalidRequest", message, target, "notAValidField")],
        error_id="REST-1043",
        message_id="IA.NOT_A_VALID_FIELD",
    )


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
