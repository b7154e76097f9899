"""The provisioning consumer: kombu's ConsumerMixin over the ``provisioning`` queue.

Messages are handled in a small thread pool (a connect makes several Intacct calls, which must
not hold up the broker's heartbeats); the consumer thread alone touches the broker and settles
each message: ack when done, else publish it to a delay queue or the dead-letter queue with a
confirm, then ack (a connect's password sealed for the delay queue, removed for the dead-letter
queue: ``workers.provisioning.sealing``). On SIGTERM it stops taking messages, lets running ones
finish and settles them; prefetched messages not started are left unacknowledged for another
consumer.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from kombu import Connection, Producer, Queue
from kombu.mixins import ConsumerMixin

from broker.topology import PROVISIONING_QUEUE_NAME
from observability.logging import get_logger
from store.crypto import SecretBox
from workers.failures import ORIGINAL_ROUTING_KEY, Failure, attempts_of, destination, reroute
from workers.provisioning.handler import ProvisioningHandler
from workers.provisioning.sealing import UnreadableSeal, opened, sealed, without_password

log = get_logger(__name__)


class ProvisioningConsumer(ConsumerMixin):
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
    ) -> None:
        self.connection = connection
        self._queue = queue
        self.handler = handler
        self._box = box
        self._workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="provisioning")
        self._running: dict[Future[Failure | None], tuple[Any, int]] = {}
        # Bumped on reconnect: messages of the old channel were given back, their outcome is moot.
        self._generation = 0
        self._stop_timeout = stop_timeout
        self._producer: Producer | None = None

    # -- kombu hooks -------------------------------------------------------------------------

    def get_consumers(self, consumer_class: Any, channel: Any) -> list[Any]:
        # As many messages in hand as threads to run them: the rest stay available to others.
        channel.basic_qos(0, self._workers, False)
        self._producer = Producer(channel)
        return [consumer_class(queues=[self._queue], callbacks=[self._on_message], accept=["json"])]

    def on_connection_revived(self) -> None:
        self._generation += 1
        self._producer = None

    def on_iteration(self) -> None:
        self._settle(block=False)

    def on_consume_end(self, connection: Any, channel: Any) -> None:
        log.info("provisioning_draining", in_flight=len(self._running))
        self._settle(block=True)

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        self._route(message, Failure("malformed_message", exc, transient=False))

    # -- receiving and settling -----------------------------------------------------------------

    def _on_message(self, body: Any, message: Any) -> None:
        headers = message.headers or {}
        # Back from a delay queue the routing key is the queue's name; the header keeps the original.
        routing_key = headers.get(ORIGINAL_ROUTING_KEY) or message.delivery_info.get("routing_key", "")
        try:
            body = opened(body, self._box)  # back from a delay queue: the password as FlexPoint sent it
        except UnreadableSeal as exc:
            self._route(message, Failure("malformed_message", exc, transient=False))
            return
        future = self._pool.submit(self.handler.handle, routing_key, body, attempts=attempts_of(headers))
        self._running[future] = (message, self._generation)

    def _settle(self, *, block: bool) -> None:
        if block and self._running:
            wait(list(self._running), timeout=self._stop_timeout)
        for future in [f for f in self._running if f.done()]:
            message, generation = self._running.pop(future)
            if generation != self._generation:
                continue
            try:
                failure = future.result()
            except Exception as exc:  # a handler bug: retried a bounded number of times, never lost
                log.exception("provisioning_handler_crashed")
                failure = Failure("worker_error", exc, transient=True)
            if failure is None:
                message.ack()
            else:
                self._route(message, failure)

    def _route(self, message: Any, failure: Failure) -> None:
        """Publish the message to its delay queue or the dead-letter queue (confirmed), then ack."""
        headers = message.headers or {}
        routing_key = headers.get(ORIGINAL_ROUTING_KEY) or message.delivery_info.get("routing_key", "")
        target = destination(failure, queue=PROVISIONING_QUEUE_NAME, routing_key=routing_key, headers=headers)
        assert self._producer is not None, "messages arrive only after get_consumers"
        # Never the password in clear: dead letters are kept and shown; delay queues are on disk.
        body = without_password(message.body) if target.dead else sealed(message.body, self._box)
        reroute(self._producer, message, target, body=body)
        log_event = "provisioning_dead_lettered" if target.dead else "provisioning_retry_scheduled"
        log.warning(log_event, reason=failure.reason, routing_key=routing_key, queue=target.queue)

    def stop(self) -> None:
        """Ask the loop to stop after the current iteration (safe from a signal handler)."""
        self.should_stop = True

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
