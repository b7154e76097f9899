"""The provisioning consumer: the ``provisioning`` queue on the worker runtime, one message at a time.

Each message is handled in a small thread pool (a connect makes several Intacct calls, which must
not hold up the broker's heartbeats) and settled on the consumer thread: ack when done, else
routed to a delay queue or the dead-letter queue with a confirm, then acked, with the connect's
password sealed for the delay queue and removed for the dead-letter queue
(``workers.connections.sealing.PasswordSeal``). On SIGTERM running messages finish and are
settled; prefetched ones not started are left unacknowledged for another consumer.
"""

from __future__ import annotations

from kombu import Connection, Queue

from store.crypto import SecretBox
from workers.connections.handler import ProvisioningHandler
from workers.connections.sealing import PasswordSeal
from workers.runtime.failures import DEFAULT_RETRY, Failure, RetryPolicy
from workers.runtime.messages import Delivery, MessageConsumer
from workers.runtime.middleware import LogContext


class ProvisioningConsumer(MessageConsumer):
    """Consumes ``queue`` with manual acks and hands each message to ``handler``."""

    def __init__(
        self,
        connection: Connection,
        queue: Queue,
        handler: ProvisioningHandler,
        box: SecretBox,
        *,
        workers: int = 4,
        stop_timeout: float = 60.0,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        super().__init__(
            connection,
            [queue],
            self._handle_delivery,
            name="provisioning",
            workers=workers,
            stop_timeout=stop_timeout,
            retry=retry,
            middleware=[LogContext(), PasswordSeal(box)],
        )
        self.handler = handler

    def _handle_delivery(self, delivery: Delivery) -> Failure | None:
        return self.handler.handle(delivery.routing_key, delivery.body, attempts=delivery.attempts)
