"""The sync consumer: the work queues on the worker runtime, events coalesced into groups.

Received events collect in the coalescer; each iteration hands ready groups to idle threads
only (the rest keep growing, which is what makes one fetch serve many events under load), and
settles finished groups per event: done and dropped acked, failed routed, rechecks sent once
more (``workers.sync.middleware.Recheck``). The runtime (``workers.runtime.consumer``) does the
rest: the pool, settling on the consumer thread, reconnects and the drain on SIGTERM; events not
yet dispatched then stay unacknowledged and the broker gives them to another consumer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

from kombu import Connection, Queue

from broker.topology import work_queue_name
from observability.logging import get_logger
from schemas.catalog import BY_RESOURCE, MODULES
from workers.runtime.consumer import WorkerConsumer
from workers.runtime.failures import DEFAULT_RETRY, RECHECK, Failure, RetrySchedule
from workers.runtime.middleware import LogContext, Middleware, Rejected
from workers.sync.groups import Coalescer, Event, Group
from workers.sync.handler import GroupOutcome, SyncHandler
from workers.sync.middleware import Recheck

log = get_logger(__name__)


class SyncConsumer(WorkerConsumer[Group, GroupOutcome]):
    """Consumes ``queues``, coalesces events and processes groups with ``handler``."""

    dead_lettered_event = "event_dead_lettered"
    has_delay_queues = True

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
        poll_interval: float = 1.0,
        middleware: Sequence[Middleware] = (),
        monotonic: Callable[[], float] = time.monotonic,
        retry: RetrySchedule = DEFAULT_RETRY,
    ) -> None:
        # A deep prefetch is what lets groups grow while every thread is busy: a backlog then
        # costs one batch read per few hundred events. Envelopes are small (~1 KB each).
        super().__init__(
            connection,
            queues,
            name="sync",
            workers=workers,
            prefetch=prefetch,
            stop_timeout=stop_timeout,
            poll_interval=poll_interval,
            middleware=[
                LogContext(),
                Recheck(retry.delays[0], existing=self._delay_queues, delays=retry.delays),
                *middleware,
            ],
            retry=retry,
        )
        self._handler = handler
        self._coalescer = Coalescer(window=window, max_keys=max_keys, clock=monotonic)
        self._monotonic = monotonic

    def _delay_queues(self) -> Collection[str]:
        """The delay queues this connection found (the recheck's copies go only to those)."""
        return self._pumped

    def accept(self, queue: str, body: Any, message: Any) -> None:
        problem = _envelope_problem(body)
        if problem is not None:
            raise Rejected(Failure("malformed_message", ValueError(problem), transient=False))
        recheck = bool((message.headers or {}).get(RECHECK))
        self._coalescer.add(Event(body, message, queue, self._monotonic(), recheck=recheck))

    def dispatch(self) -> None:
        for group in self._coalescer.ready(limit=self.idle):
            self.submit(group)

    def handle(self, unit: Group) -> GroupOutcome:
        return self._handler.process(unit)

    def crashed(self, unit: Group, exc: Exception) -> GroupOutcome:
        log.exception("group_handler_crashed", resource=unit.resource)
        return GroupOutcome(
            failed=[(e, Failure("worker_error", exc, transient=True)) for e in unit.all_events]
        )

    def settle(self, unit: Group, outcome: GroupOutcome) -> None:
        for event in outcome.done + outcome.dropped:
            event.message.ack()
        for event, failure in outcome.failed:
            self.route(event.message, event.queue, failure)

    def queue_of(self, message: Any) -> str:
        module = message.delivery_info.get("routing_key", "").split(".", 1)[0]
        return work_queue_name(module) if module in MODULES else "unknown"

    def on_connection_revived(self) -> None:
        super().on_connection_revived()
        dropped = self._coalescer.drop_all()
        if dropped:
            log.info("events_left_to_redelivery", count=dropped)

    def draining_state(self) -> dict[str, Any]:
        return {"groups_in_flight": len(self._running), "events_not_started": len(self._coalescer)}


def _envelope_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "the message is not a JSON object"
    for name in ("connectionId", "resource", "key"):
        if not isinstance(body.get(name), str | int) or body.get(name) in ("", None):
            return f"the envelope has no {name}"
    if body["resource"] not in BY_RESOURCE:
        return f"unknown resource {body['resource']!r}"
    return None
