"""The root of every exception flexsync raises, and the two kinds a unit of work can fail with.

A worker needs one question answered about a failure: wait and try again (:class:`Transient`)
or park it with its reason (:class:`Permanent`). Each class names its ``reason`` (the code the
dead-letter headers carry); an instance may name a more precise one.
"""

from __future__ import annotations

from typing import Any


class FlexsyncError(Exception):
    """Root of the project's exceptions; ``reason`` is a short snake_case code for machines."""

    reason: str = "flexsync_error"
    transient: bool = False


class Transient(FlexsyncError):
    """A failure that waiting may heal (a peer down, a rate limit, a busy resource)."""

    reason = "transient"
    transient = True


class Throttled(Transient):
    """A peer asked us to slow down (HTTP 429); ``retry_after`` is the wait it named, in seconds."""

    reason = "rate_limited"

    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class BreakerOpen(Transient):
    """Not even tried: the peer failed repeatedly and its circuit breaker holds calls back until its
    next probe, ``retry_after`` seconds from now (mixed into each client's own unavailable error)."""

    reason = "breaker_open"
    retry_after: float = 0.0


class Permanent(FlexsyncError):
    """A failure that trying again cannot heal (bad data, a refusal): dead-letter it with its reason."""

    reason = "permanent"
    transient = False


class LeaseLost(FlexsyncError, RuntimeError):
    """The lease is no longer ours (it ran out and was taken, or was cancelled): stop, write nothing."""

    reason = "lease_lost"


class OpsError(FlexsyncError, RuntimeError):
    """An operation could not run; the message is meant for the operator, as is."""

    reason = "ops_error"
