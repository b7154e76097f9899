"""What happens to a message that could not be processed: retried later, or parked.

Transient failures (Intacct or FlexPoint unavailable, rate limits, a broker or database hiccup)
go to the work queue's delay queues with growing delays (each copy stamped with when it is due,
``x-flexsync-due-at``, and moved back by the workers' delay pump then), then keep coming back through the
longest one for as long as the archive keeps the event (``ARCHIVE_MAX_AGE``, counted from the
first failure): an outage of any shorter length loses nothing and needs nobody. When a peer's
circuit breaker is open the wait is at least the time to its next probe, so the event waits in
the broker rather than calling a peer that is down: held back without a call, it is not counted
as an attempt and waits in the longest delay queue that ends by the probe (the spacing of probes
is bounded, so it comes back to meet the probe), and once the breaker closes the sync releases
its delay queues at once (``WorkerConsumer.release_delayed``). A handler bug (``worker_error``) is retried
only as many times as there are delays. Everything else goes to the ``dead-letter`` queue at
once, with headers naming the reason, the exception, the attempts, the original routing key and
queue. Nothing is retried forever and nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import OperationalError

# The header names are the broker contract operations read; re-exported for the workers.
from broker.headers import (
    ATTEMPTS,
    DUE_AT,
    EXCEPTION,
    FAILED_AT,
    FIRST_FAILED_AT,
    ORIGINAL_QUEUE,
    ORIGINAL_ROUTING_KEY,
    REASON,
    RECHECK,
)
from broker.topology import DEAD_LETTER_QUEUE_NAME, RETRY_DELAYS_SECONDS, delay_queue_name
from reliability.errors import BreakerOpen, Permanent, Throttled, Transient

__all__ = [
    "ATTEMPTS",
    "DUE_AT",
    "EXCEPTION",
    "FAILED_AT",
    "FIRST_FAILED_AT",
    "ORIGINAL_QUEUE",
    "ORIGINAL_ROUTING_KEY",
    "REASON",
    "RECHECK",
    "Destination",
    "Failure",
    "RetrySchedule",
    "attempts_of",
    "delayed_headers",
    "destination",
    "due_at",
    "failure_of",
    "nearest_delay_queue",
    "reroute",
    "where_it_exists",
]

MAX_EXCEPTION_TEXT = 2000


@dataclass(frozen=True)
class Failure:
    """Why a message failed: a short reason code, the exception, and whether to retry."""

    reason: str
    exception: BaseException
    transient: bool


@dataclass(frozen=True)
class RetrySchedule:
    """The delay queues' schedule and how long a transient failure may keep using it."""

    delays: tuple[int, ...] = RETRY_DELAYS_SECONDS
    window_seconds: float = 7 * 86_400

    @classmethod
    def from_settings(cls, settings: Any) -> RetrySchedule:
        return cls(tuple(settings.flexsync_retry_delays), float(settings.retry_window_seconds))

    def delay(self, attempts: int, wait_hint: float | None = None) -> int:
        """The delay queue for the ``attempts``-th failure; at least ``wait_hint`` when one is known."""
        delay = self.delays[min(attempts, len(self.delays)) - 1]
        if wait_hint is not None and wait_hint > delay:
            delay = next((d for d in self.delays if d >= wait_hint), self.delays[-1])
        return delay

    def hold(self, wait: float) -> int:
        """The delay queue for a message an open breaker held back until its probe, ``wait`` s away:
        the longest that ends by then, so it is back when the probe is due; never the shortest when
        there are several (it would pass by every other second, at no use: one pass per second
        delay overshoots the probe by at most that)."""
        ordered = sorted(set(self.delays))
        floor = ordered[1] if len(ordered) > 1 else ordered[0]
        return max([floor, *(d for d in ordered if d <= wait)])


DEFAULT_RETRY = RetrySchedule()
BOUNDED_REASONS = frozenset({"worker_error"})


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
    policy: RetrySchedule = DEFAULT_RETRY,
) -> Destination:
    """The delay queue for the next attempt, or the dead-letter queue when it is over."""
    now = now or datetime.now(UTC)
    headers = dict(headers or {})
    held = isinstance(failure.exception, BreakerOpen) and failure.transient
    # Held back by an open breaker, the message was not tried: not counted as an attempt.
    attempts = attempts_of(headers) + (0 if held else 1)
    headers[ATTEMPTS] = attempts
    headers.setdefault(ORIGINAL_ROUTING_KEY, routing_key)
    headers.setdefault(ORIGINAL_QUEUE, queue)
    first = _instant(headers.get(FIRST_FAILED_AT)) or now
    headers.setdefault(FIRST_FAILED_AT, _stamp(first))
    exhausted = ""
    if failure.transient:
        if failure.reason in BOUNDED_REASONS:
            if attempts <= len(policy.delays):
                return _retry(headers, policy.delays[attempts - 1], now)
            exhausted = "attempts_exhausted"
        elif held and (now - first).total_seconds() < policy.window_seconds:
            return _retry(headers, policy.hold(getattr(failure.exception, "retry_after", 0.0) or 0.0), now)
        elif (now - first).total_seconds() < policy.window_seconds:
            return _retry(headers, policy.delay(attempts, _wait_hint(failure.exception)), now)
        else:
            exhausted = "retry_window_exhausted"
    reason = f"{failure.reason}:{exhausted}" if exhausted else failure.reason
    return _dead(headers, reason, f"{type(failure.exception).__name__}: {failure.exception}", now)


def _dead(headers: dict[str, Any], reason: str, text: str, now: datetime) -> Destination:
    headers = {**headers, REASON: reason, EXCEPTION: text[:MAX_EXCEPTION_TEXT], FAILED_AT: _stamp(now)}
    return Destination(DEAD_LETTER_QUEUE_NAME, headers, dead=True)


def where_it_exists(
    target: Destination, existing: Collection[str], delays: Sequence[int], now: datetime | None = None
) -> Destination:
    """``target``, or where its copy can wait when its delay queue does not exist on the broker.

    The default exchange drops what it cannot route, and the broker confirms the publish all the
    same: a copy sent to a missing delay queue would be lost, its original acked. It waits instead
    in the longest delay queue of the same work queue that exists and is not longer than the one
    meant (else the shortest that exists): the pump moves it back when its ``x-flexsync-due-at``
    comes, so it waits as long as it was meant to. When the work queue has no delay queue at all,
    the copy is dead-lettered, saying why."""
    if target.dead or target.queue in existing:
        return target
    work_queue = target.headers[ORIGINAL_QUEUE]
    ladder = sorted(set(delays))
    meant = next((d for d in ladder if delay_queue_name(work_queue, d) == target.queue), ladder[-1])
    instead = nearest_delay_queue(work_queue, meant, existing, delays)
    if instead is not None:
        return Destination(instead, target.headers, dead=False)
    return _dead(
        target.headers,
        "delay_queue_missing",
        f"none of {work_queue}'s delay queues exists ({target.queue} was meant): declare the topology "
        "with FLEXSYNC_RETRY_DELAYS as the worker has it, then replay this letter",
        now or datetime.now(UTC),
    )


def nearest_delay_queue(
    work_queue: str, meant: int, existing: Collection[str], delays: Sequence[int]
) -> str | None:
    """Of ``work_queue``'s delay queues on the ladder (and the one of ``meant`` seconds), the one
    of ``meant`` seconds if it is in ``existing``; else the longest there not longer; else the
    shortest there; None when none of them is."""
    ladder = sorted({*delays, meant})
    there = [(delay, name) for delay in ladder if (name := delay_queue_name(work_queue, delay)) in existing]
    shorter = [name for delay, name in there if delay <= meant]
    return shorter[-1] if shorter else (there[0][1] if there else None)


def _wait_hint(exc: BaseException) -> float | None:
    """The wait the peer named (Retry-After) or its breaker holds calls back for, when known."""
    if isinstance(exc, (Throttled, BreakerOpen)):
        return exc.retry_after
    return None


def _retry(headers: dict[str, Any], delay: int, now: datetime) -> Destination:
    return Destination(
        delay_queue_name(headers[ORIGINAL_QUEUE], delay), delayed_headers(headers, delay, now), dead=False
    )


def delayed_headers(headers: dict[str, Any], delay: int, now: datetime | None = None) -> dict[str, Any]:
    """``headers`` of a copy going into the ``delay`` s queue, stamped with when it is due back."""
    due = (now or datetime.now(UTC)) + timedelta(seconds=delay)
    return {**headers, DUE_AT: _stamp(due)}


def due_at(headers: dict[str, Any] | None) -> datetime | None:
    """When a delayed message is due back (None when it carries no stamp)."""
    return _instant((headers or {}).get(DUE_AT))


def _stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _instant(value: Any) -> datetime | None:
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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
