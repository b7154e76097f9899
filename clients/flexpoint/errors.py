"""The FlexPoint client's one exception hierarchy, split by what the caller should do next.

Each concrete error is :class:`~reliability.errors.Transient` (back through the delay queues) or
:class:`~reliability.errors.Permanent` (to the dead-letter queue, ``reason`` and ``str(error)``
in its headers); the worker looks at nothing else.
No message ever holds the bearer token: the client scrubs what FlexPoint echoes before raising.
"""

from __future__ import annotations

from typing import Any

from reliability.errors import BreakerOpen, FlexsyncError, Permanent, Throttled, Transient


class FlexPointError(FlexsyncError):
    """A call to FlexPoint's Sync API failed (root of the client's errors)."""

    def __init__(
        self, message: str, *, status: int | None = None, code: str | None = None, details: Any = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details = details
        # Set by the client when it gives up, so the reason says how hard it tried.
        self.attempts = 1

    def __str__(self) -> str:
        return self.message if self.attempts <= 1 else f"{self.message} (after {self.attempts} attempts)"


class FlexPointCallFailed(FlexPointError, Permanent):
    """The call could not be made (a malformed URL), or FlexPoint's 2xx answer cannot be used."""

    reason = "flexpoint_error"


class FlexPointUnavailable(FlexPointError, Transient):
    """FlexPoint answered 5xx, timed out or could not be reached; retrying later may succeed."""

    reason = "flexpoint_unavailable"


class FlexPointBreakerOpen(FlexPointUnavailable, BreakerOpen):
    """Not called: FlexPoint failed repeatedly and its breaker is open until the next probe, in
    ``retry_after`` seconds."""

    reason = FlexPointUnavailable.reason

    def __init__(self, message: str, *, retry_after: float) -> None:
        FlexPointUnavailable.__init__(self, message)
        self.retry_after = retry_after


class FlexPointRateLimited(Throttled, FlexPointError):
    """FlexPoint answered 429; ``retry_after`` is the wait it asked for in seconds (None if unsaid)."""

    reason = "flexpoint_rate_limited"


class FlexPointRejected(FlexPointError, Permanent):
    """FlexPoint refused the request itself (400, 404, 409, 413, ...): sending it again cannot help.

    ``code``, ``message`` and ``details`` are FlexPoint's Error body; for a batch,
    ``external_ids`` names the items its violations point at, so the dead-letter reason says
    which record and which field broke the contract.
    """

    reason = "flexpoint_rejected"

    def __init__(self, message: str, *, external_ids: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.external_ids = external_ids


class FlexPointUnauthorized(FlexPointError, Permanent):
    """FlexPoint refused our bearer token (401): our configuration, not the data, is wrong."""

    reason = "flexpoint_unauthorized"
