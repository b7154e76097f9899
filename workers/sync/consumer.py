"""The sync consumer: kombu's ConsumerMixin over the work queues, groups processed in a pool.

The consumer thread is the only one touching the broker: it receives events into the
coalescer, hands ready groups to worker threads, and settles finished groups (ack; or publish
to a delay queue or the dead-letter queue with a confirm, then ack). Nothing is acknowledged
before FlexPoint confirmed the write or the message was safely re-routed. On SIGTERM it stops
taking messages, lets running groups finish and settles them; events not yet dispatched are
left unacknowledged and the broker gives them to another consumer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import partial
from typing import Any

from kombu import Connection, Producer, Queue
from kombu.mixins import ConsumerMixin

from broker.topology import RETRY_DELAYS_SECONDS, retry_queue_name, work_queue_name
from observability.logging import get_logger
from schemas.catalog import BY_RESOURCE, MODULES
from workers.failures import RECHECK, Failure, destination, reroute
from workers.sync.groups import Coalescer, Event, Group
from workers.sync.handler import Outcome, SyncHandler

log = get_logger(__name__)


class SyncConsumer(ConsumerMixin):
    """Consumes ``queues``, coalesces events and processes groups with ``handler``."""

    def __init__(
        self,
        connection: Connection,
        queues: list[Queue],
        handler: SyncHandler,
        *,
        prefetch: int = 5000,
        window: float = 0.2,
        max_keys: int = 500,
        workers: int = 8,
        stop_timeout: float = 30.0,
        on_settled: Callable[[Group, Outcome], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.connection = connection
        self._queues = queues
        self._handler = handler
        self._prefetch = prefetch
        self._coalescer = Coalescer(window=window, max_keys=max_keys, clock=monotonic)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="sync-group")
        self._workers = workers
        self._running: dict[Future[Outcome], tuple[Group, int]] = {}
        # Bumped when the connection is re-established: deliveries of an older channel can no
        # longer be acknowledged (the broker already gave them back), so their outcomes are moot.
        self._generation = 0
        self._stop_timeout = stop_timeout
        self._on_settled = on_settled or (lambda group, outcome: None)
        self._monotonic = monotonic
        self._producer: Producer | None = None

    # -- kombu hooks -------------------------------------------------------------------------

    def get_consumers(self, consumer_class: Any, channel: Any) -> list[Any]:
        # A deep prefetch is what lets groups grow while every thread is busy: a backlog then
        # costs one batch read per few hundred events. Envelopes are small (~1 KB each).
        channel.basic_qos(0, self._prefetch, False)
        # Retries and dead letters go out on the consuming channel, which the mixin renews on
        # every reconnect; with confirm_publish each publish waits for the broker's ack.
        self._producer = Producer(channel)
        return [
            consumer_class(queues=[queue], callbacks=[partial(self._on_message, queue.name)], accept=["json"])
            for queue in self._queues
        ]

    def on_connection_revived(self) -> None:
        self._generation += 1
        self._producer = None
        dropped = self._coalescer.drop_all()
        if dropped:
            log.info("events_left_to_redelivery", count=dropped)

    def on_iteration(self) -> None:
        self._dispatch(everything=False)
        self._settle(block=False)

    def on_consume_end(self, connection: Any, channel: Any) -> None:
        # Graceful stop: finish what runs, settle it on this still-open channel.
        log.info(
            "sync_draining", groups_in_flight=len(self._running), events_not_started=len(self._coalescer)
        )
        self._settle(block=True)

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        routing_key = message.delivery_info.get("routing_key", "")
        self._route(
            message, _queue_of(routing_key), routing_key, Failure("malformed_message", exc, transient=False)
        )

    # -- receiving ---------------------------------------------------------------------------

    def _on_message(self, queue: str, body: Any, message: Any) -> None:
        problem = _envelope_problem(body)
        if problem is not None:
            self._route(
                message,
                queue,
                message.delivery_info.get("routing_key", ""),
                Failure("malformed_message", ValueError(problem), transient=False),
            )
            return
        recheck = bool((message.headers or {}).get(RECHECK))
        self._coalescer.add(Event(body, message, queue, self._monotonic(), recheck=recheck))

    def _dispatch(self, *, everything: bool) -> None:
        # Only as many groups as there are idle threads: the rest keep growing in the coalescer,
        # which is what makes one fetch serve many events under load.
        idle = self._workers - sum(1 for future in self._running if not future.done())
        for group in self._coalescer.ready(everything=everything, limit=idle):
            future = self._pool.submit(self._handler.process, group)
            self._running[future] = (group, self._generation)

    # -- settling ----------------------------------------------------------------------------

    def _settle(self, *, block: bool) -> None:
        if block and self._running:
            wait(list(self._running), timeout=self._stop_timeout)
        for future in [f for f in self._running if f.done()]:
            group, generation = self._running.pop(future)
            if generation != self._generation:
                continue
            try:
                outcome = future.result()
            except Exception as exc:  # a handler bug: retried like any failure, never lost
                log.exception("group_handler_crashed", resource=group.resource)
                outcome = Outcome(
                    failed=[(e, Failure("worker_error", exc, transient=True)) for e in group.all_events]
                )
            for event in outcome.recheck:
                self._schedule_recheck(event)
            for event in outcome.done + outcome.dropped:
                event.message.ack()
            for event, failure in outcome.failed:
                self._route(
                    event.message, event.queue, event.message.delivery_info.get("routing_key", ""), failure
                )
            self._on_settled(group, outcome)

    def _schedule_recheck(self, event: Event) -> None:
        """A copy of the event through the shortest delay queue (confirmed before the ack)."""
        assert self._producer is not None
        message = event.message
        self._producer.publish(
            message.body,
            exchange="",
            routing_key=retry_queue_name(event.queue, RETRY_DELAYS_SECONDS[0]),
            headers={**(message.headers or {}), RECHECK: 1},
            delivery_mode=2,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            message_id=message.properties.get("message_id"),
            retry=False,
        )

    def _route(self, message: Any, queue: str, routing_key: str, failure: Failure) -> None:
        """Publish the message to its delay queue or the dead-letter queue (confirmed), then ack."""
        target = destination(failure, queue=queue, routing_key=routing_key, headers=message.headers)
        assert self._producer is not None, "messages arrive only after get_consumers"
        reroute(self._producer, message, target)
        if target.dead:
            log.warning("event_dead_lettered", reason=failure.reason, queue=queue, routing_key=routing_key)

    def stop(self) -> None:
        """Ask the loop to stop after the current iteration (safe from a signal handler)."""
        self.should_stop = True

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _queue_of(routing_key: str) -> str:
    module = routing_key.split(".", 1)[0]
    return work_queue_name(module) if module in MODULES else "unknown"


def _envelope_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "the message is not a JSON object"
    for name in ("connectionId", "resource", "key"):
        if not isinstance(body.get(name), str | int) or body.get(name) in ("", None):
            return f"the envelope has no {name}"
    if body["resource"] not in BY_RESOURCE:
        return f"unknown resource {body['resource']!r}"
    return None
