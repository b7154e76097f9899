"""The writeback consumer: kombu's ConsumerMixin over the ``writeback`` queue.

Messages are handled in a small thread pool (a posting makes a few Intacct calls, which must not
hold up the broker's heartbeats); the consumer thread alone touches the broker and settles each
message: ack when done, else publish it to a delay queue or the dead-letter queue with a
confirm, then ack. A payment that can still be posted is never dead-lettered for a transient
failure: after the last delay it keeps coming back through the longest one. On SIGTERM it stops
taking messages and settles those running; prefetched ones not started go back to the queue.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from kombu import Connection, Producer, Queue
from kombu.mixins import ConsumerMixin

from broker.topology import RETRY_DELAYS_SECONDS, WRITEBACK_QUEUE_NAME
from observability.logging import get_logger
from workers.failures import ATTEMPTS, ORIGINAL_ROUTING_KEY, Failure, attempts_of, destination, reroute
from workers.writeback.errors import FlexPointDown, IntacctDown, OutcomeUnknown, PaymentBusy

log = get_logger(__name__)

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


class WritebackConsumer(ConsumerMixin):
    """Consumes ``queue`` with manual acks and hands each message to ``handler``."""

    def __init__(
        self,
        connection: Connection,
        queue: Queue,
        handler: Any,
        *,
        workers: int = 4,
        stop_timeout: float = 60.0,
    ) -> None:
        self.connection = connection
        self._queue = queue
        self.handler = handler
        self._workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="writeback")
        self._running: dict[Future[Failure | None], tuple[Any, int]] = {}
        # Bumped on reconnect: messages of the old channel were given back, their outcome is moot.
        self._generation = 0
        self._stop_timeout = stop_timeout
        self._producer: Producer | None = None

    def get_consumers(self, consumer_class: Any, channel: Any) -> list[Any]:
        channel.basic_qos(0, self._workers, False)
        self._producer = Producer(channel)
        return [consumer_class(queues=[self._queue], callbacks=[self._on_message], accept=["json"])]

    def on_connection_revived(self) -> None:
        self._generation += 1
        self._producer = None

    def on_iteration(self) -> None:
        self._settle(block=False)

    def on_consume_end(self, connection: Any, channel: Any) -> None:
        log.info("writeback_draining", in_flight=len(self._running))
        self._settle(block=True)

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        self._route(message, Failure("malformed_message", exc, transient=False))

    def _on_message(self, body: Any, message: Any) -> None:
        headers = message.headers or {}
        # Back from a delay queue the routing key is the queue's name; the header keeps the original.
        routing_key = headers.get(ORIGINAL_ROUTING_KEY) or message.delivery_info.get("routing_key", "")
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
                log.exception("writeback_handler_crashed")
                failure = Failure("worker_error", exc, transient=True)
            if failure is None:
                message.ack()
            else:
                self._route(message, failure)

    def _route(self, message: Any, failure: Failure) -> None:
        """Publish the message to its delay queue or the dead-letter queue (confirmed), then ack."""
        headers = patient_headers(failure, message.headers)
        routing_key = headers.get(ORIGINAL_ROUTING_KEY) or message.delivery_info.get("routing_key", "")
        target = destination(failure, queue=WRITEBACK_QUEUE_NAME, routing_key=routing_key, headers=headers)
        assert self._producer is not None, "messages arrive only after get_consumers"
        reroute(self._producer, message, target)
        event = "writeback_dead_lettered" if target.dead else "writeback_retry_scheduled"
        log.warning(event, reason=failure.reason, routing_key=routing_key, queue=target.queue)

    def stop(self) -> None:
        """Ask the loop to stop after the current iteration (safe from a signal handler)."""
        self.should_stop = True

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
