"""What happens to a message that could not be processed: retried later, or parked.

Transient failures (Intacct or FlexPoint unavailable, rate limits, a broker hiccup) go to the
work queue's delay queues with growing delays, a bounded number of times; everything else,
and whatever outlives its attempts, goes to the ``dead-letter`` queue with headers naming the
reason, the exception, the attempts, the original routing key and queue. Nothing is retried
forever and nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import OperationalError

# The header names are the broker contract operations read; re-exported for the workers.
from broker.headers import (
    ATTEMPTS,
    EXCEPTION,
    FAILED_AT,
    ORIGINAL_QUEUE,
    ORIGINAL_ROUTING_KEY,
    REASON,
    RECHECK,
)
from broker.topology import DEAD_LETTER_QUEUE_NAME, RETRY_DELAYS_SECONDS, retry_queue_name
from reliability.errors import Permanent, Transient

__all__ = [
    "ATTEMPTS",
    "EXCEPTION",
    "FAILED_AT",
    "ORIGINAL_QUEUE",
    "ORIGINAL_ROUTING_KEY",
    "REASON",
    "RECHECK",
    "Destination",
    "Failure",
    "attempts_of",
    "destination",
    "failure_of",
    "reroute",
]

MAX_EXCEPTION_TEXT = 2000


@dataclass(frozen=True)
class Failure:
    """Why a message failed: a short reason code, the exception, and whether to retry."""

    reason: str
    exception: BaseException
    transient: bool


@dataclass(frozen=True)
class Destination:
    """Where a failed message goes: a queue (through the default exchange) and its headers."""

    queue: str
    headers: dict[str, Any]
    dead: bool


def failure_of(exc: BaseException) -> Failure:
    """Classify by type: Transient retries, Permanent dead-letters with its reason.

    A database that cannot be reached is transient (``database_unavailable``); anything else is
    a bug or a surprise, retried a few times as ``worker_error`` before it is parked.
    """
    if isinstance(exc, Transient):
        return Failure(exc.reason, exc, transient=True)
    if isinstance(exc, Permanent):
        return Failure(exc.reason, exc, transient=False)
    if isinstance(exc, OperationalError):
        return Failure("database_unavailable", exc, transient=True)
    return Failure("worker_error", exc, transient=True)


def attempts_of(headers: dict[str, Any] | None) -> int:
    """How many times this message already failed (0 for a fresh one)."""
    value = (headers or {}).get(ATTEMPTS, 0)
    return value if isinstance(value, int) and value >= 0 else 0


def destination(
    failure: Failure,
    *,
    queue: str,
    routing_key: str,
    headers: dict[str, Any] | None,
    now: datetime | None = None,
) -> Destination:
    """The delay queue for the next attempt, or the dead-letter queue when it is over."""
    headers = dict(headers or {})
    attempts = attempts_of(headers) + 1
    headers[ATTEMPTS] = attempts
    headers.setdefault(ORIGINAL_ROUTING_KEY, routing_key)
    headers.setdefault(ORIGINAL_QUEUE, queue)
    if failure.transient and attempts <= len(RETRY_DELAYS_SECONDS):
        delay = RETRY_DELAYS_SECONDS[attempts - 1]
        return Destination(retry_queue_name(headers[ORIGINAL_QUEUE], delay), headers, dead=False)
    reason = failure.reason if not failure.transient else f"{failure.reason}:attempts_exhausted"
    text = f"{type(failure.exception).__name__}: {failure.exception}"
    headers.update(
        {
            REASON: reason,
            EXCEPTION: text[:MAX_EXCEPTION_TEXT],
            FAILED_AT: (now or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        }
    )
    return Destination(DEAD_LETTER_QUEUE_NAME, headers, dead=True)


def reroute(producer: Any, message: Any, target: Destination, *, body: bytes | None = None) -> None:
    """Publish ``message`` to ``target``'s queue with the broker's confirm, then ack the original.

    ``producer`` is a kombu Producer on the consuming channel with ``confirm_publish``, so the
    publish returns only once the copy is safe; the ack comes after, never before. ``body``
    replaces the message's own (e.g. with a secret removed).
    """
    producer.publish(
        message.body if body is None else body,
        exchange="",
        routing_key=target.queue,
        headers=target.headers,
        delivery_mode=2,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        message_id=message.properties.get("message_id"),
        retry=False,
    )
    message.ack()
