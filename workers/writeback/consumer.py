"""The writeback consumer: the worker runtime's one-message shape over the ``writeback`` queue.

A posting makes a few Intacct calls, so messages are handled in the runtime's thread pool while
its consumer thread alone acks and routes. A payment that can still be posted is never
dead-lettered for a transient failure: like every worker's, it keeps coming back through the
longest delay for as long as the retry window lasts (``workers.runtime.failures``).
"""

from __future__ import annotations

from typing import Any

from kombu import Connection, Queue

from workers.runtime.failures import DEFAULT_RETRY, Failure, RetryPolicy
from workers.runtime.messages import Delivery, MessageConsumer
from workers.runtime.middleware import LogContext


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
