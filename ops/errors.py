"""The one error operations tools raise: its message says what went wrong and what to do."""

from __future__ import annotations

from reliability.errors import FlexsyncError


class OpsError(FlexsyncError, RuntimeError):
    """An operation could not run; the message is meant for the operator, as is."""

    reason = "ops_error"
