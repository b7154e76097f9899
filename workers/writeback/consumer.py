"""The writeback consumer: the worker runtime's one-message shape over the ``writeback`` queue.

A posting makes a few Intacct calls, so messages are handled in the runtime's thread pool while
its consumer thread alone acks and routes. A payment that can still be posted is never
dead-lettered for a transient failure: after the last delay it keeps coming back through the
longest one (``patient_headers``).
"""

from __future__ import annotations

from typing import Any

from kombu import Connection, Queue

from broker.topology import RETRY_DELAYS_SECONDS
from workers.failures import ATTEMPTS, DEFAULT_RETRY, Failure, RetryPolicy, attempts_of
from workers.runtime.messages import Delivery, MessageConsumer
from workers.runtime.middleware import LogContext
from workers.writeback.errors import FlexPointDown, IntacctDown, OutcomeUnknown, PaymentBusy

# Transient failures that leave the payment postable: retried for as long as they last.
PATIENT_REASONS = frozenset(
    {
        IntacctDown.reason,
        OutcomeUnknown.reason,
        PaymentBusy.reason,
        FlexPointDown.reason,
        "intacct_unavailable",
    }
)


def patient_headers(failure: Failure, headers: dict[str, Any] | None) -> dict[str, Any]:
    """The headers to route with: a patient failure past the last delay stays on the longest one."""
    headers = dict(headers or {})
    if failure.transient and failure.reason in PATIENT_REASONS:
        headers[ATTEMPTS] = min(attempts_of(headers), len(RETRY_DELAYS_SECONDS) - 1)
    return headers


class WritebackConsumer(MessageConsumer):
    """Consumes ``queue`` and hands each payment message to ``handler.handle``."""

    def __init__(
        self,
        connection: Connection,
        queue: Queue,
        handler: Any,
        *,
        workers: int = 4,
        stop_timeout: float = 60.0,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        super().__init__(
            connection,
            [queue],
            self._handle_delivery,
            name="writeback",
            workers=workers,
            stop_timeout=stop_timeout,
            retry=retry,
            poll_interval=0.05,
            middleware=[LogContext()],
        )
        self.handler = handler

    def _handle_delivery(self, delivery: Delivery) -> Failure | None:
        return self.handler.handle(delivery.routing_key, delivery.body, attempts=delivery.attempts)

    def route_headers(self, message: Any, failure: Failure) -> dict[str, Any]:
        return patient_headers(failure, message.headers)
