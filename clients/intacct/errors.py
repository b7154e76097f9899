"""Every failure the Intacct client raises: one hierarchy rooted at :class:`IntacctError`.

Each concrete error is also :class:`~reliability.errors.Transient` (retry later through the
delay queues) or :class:`~reliability.errors.Permanent` (dead-letter / report to the customer),
with the ``reason`` code the dead-letter headers carry. Messages name the call, the status and Intacct's
error code and text, never a token, secret or password.
"""

from __future__ import annotations

from typing import Any

from reliability.errors import BreakerOpen, FlexsyncError, Permanent, Throttled, Transient

# intacct-rest.md, "Failure signals": what each token endpoint answer means for the connection.
REASON_INTERNAL = "internal_error"
REASON_COMPANY = "company_not_found"
REASON_CREDENTIALS = "invalid_credentials"
REASON_SENDER = "sender_not_authorized"

# The permission areas of FlexPoint's ConnectionStatus.missingPermissions.
AREAS = ("company", "general-ledger", "accounts-receivable", "cash-management")


def area_of(object_path: str) -> str:
    """The permission area of a REST object path (``company-config/entity`` → ``company``)."""
    head = object_path.strip("/").split("/", 1)[0]
    # Roles name the Company area; the REST paths call it company-config.
    return "company" if head == "company-config" else head


class IntacctError(FlexsyncError):
    """Root of the client's errors; ``status``, ``code`` and ``error_id`` come from Intacct's answer."""

    def __init__(
        self, message: str, *, status: int | None = None, code: str | None = None, error_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.error_id = error_id


class IntacctUnavailable(IntacctError, Transient):
    """Intacct answered 5xx, timed out or could not be reached, after the client's quick retries."""

    reason = "intacct_unavailable"


class IntacctBreakerOpen(IntacctUnavailable, BreakerOpen):
    """Not called: the company's Intacct failed repeatedly and its breaker is open until the next
    probe, in ``retry_after`` seconds (nothing was sent, so a write's outcome is known: not made)."""

    reason = IntacctUnavailable.reason

    def __init__(self, message: str, *, retry_after: float) -> None:
        IntacctUnavailable.__init__(self, message)
        self.retry_after = retry_after


class RateLimited(Throttled, IntacctError):
    """Intacct kept answering 429; ``retry_after`` is its last hint in seconds (None: none given)."""

    reason = "rate_limited"


class CompanyBusy(RateLimited):
    """No slot of the company's concurrency cap came free in time (every slot held by others)."""

    reason = "company_busy"


class TokenInvalid(IntacctError, Transient):
    """The API refused the access token (401) even after one renewal; renew and retry later."""

    reason = "token_invalid"


class PermissionDenied(IntacctError, Permanent):
    """The Web Services user's role lacks ``area`` (403 ``permissionDenied``)."""

    reason = "permission_denied"

    def __init__(self, message: str, *, area: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.area = area


class RecordNotFound(IntacctError, Permanent):
    """The record (or object) does not exist (404); ``details`` are ia::error's (which field, when said)."""

    def __init__(self, message: str, *, details: list[Any] | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.details = details or []

    reason = "record_not_found"


class IntacctRejected(IntacctError, Permanent):
    """Intacct refused the request as wrong (400, 409, 422, other 4xx); ``details`` are ia::error's."""

    reason = "intacct_rejected"

    def __init__(self, message: str, *, details: list[Any] | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.details = details or []


class TokenRefused(IntacctError, Permanent):
    """The token endpoint refused the credentials; ``reason`` is FlexPoint's ConnectionStatus reason
    (so a dead-lettered message names it too).

    ``error`` and ``description`` are the OAuth2 answer (RFC 6749 §5.2), for the admin's message.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        error: str | None = None,
        description: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, code=kwargs.pop("code", error), **kwargs)
        self.reason = reason
        self.error = error
        self.description = description


def parse_ia_error(body: Any) -> dict[str, Any]:
    """The ``ia::error`` object of an answer, under ``ia::result`` or at the top level ({} if none)."""
    if not isinstance(body, dict):
        return {}
    result = body.get("ia::result")
    for holder in (result, body):
        if isinstance(holder, dict) and isinstance(holder.get("ia::error"), dict):
            return holder["ia::error"]
    # A batch answer may carry its errors as a list of results.
    if isinstance(result, list):
        for item in result:
            if isinstance(item, dict) and isinstance(item.get("ia::error"), dict):
                return item["ia::error"]
    return {}


def token_refusal_reason(error: str | None, description: str | None) -> str:
    """Map an OAuth2 error answer of the token endpoint to a ConnectionStatus reason."""
    text = (description or "").lower()
    if error == "invalid_client":
        # FlexPoint's own client ID or secret is wrong: our configuration, not the customer's.
        return REASON_INTERNAL
    if error == "unauthorized_client":
        return REASON_SENDER
    if error == "invalid_grant":
        if "company" in text or "entity" in text:
            # An unknown entity is a wrong company setting too (the ID the admin typed).
            return REASON_COMPANY
        return REASON_CREDENTIALS
    if error == "access_denied":
        return REASON_CREDENTIALS
    # invalid_request, unsupported_grant_type, invalid_scope, anything unknown: a bug on our side.
    return REASON_INTERNAL
