"""The receiver's refusals: each carries its HTTP status, a machine code and a sentence.

Views raise; one error handler renders ``{"error": {"code", "message"}}`` (plus field errors
for a 400), so every refusal has the same JSON shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reliability.errors import FlexsyncError


class WebhookRefused(FlexsyncError):
    """A webhook delivery is refused with ``status``; nothing was published (``reason`` is its code)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        fields: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.reason = code
        self.message = message
        self.fields = dict(fields) if fields else None
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            error["fields"] = self.fields
        return {"error": error}


def unavailable(code: str, message: str, retry_after: int) -> WebhookRefused:
    """A 503 that tells Intacct (which retries 503) when to come back."""
    return WebhookRefused(503, code, message, headers={"Retry-After": str(retry_after)})
