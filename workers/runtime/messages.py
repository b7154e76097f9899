"""One message per unit of work, ``Failure | None`` per outcome: the shape of provisioning and writeback.

Both are a :class:`QueueConsumer`: one queue, each message handled in the runtime's thread pool
(a connect or a posting makes several HTTP calls, which must not hold up the broker's heartbeats)
and settled on the consumer thread: ack when done, else routed to a delay queue or the dead-letter
queue with a confirm, then acked. On SIGTERM running messages finish and are settled; prefetched
ones not started are left unacknowledged for another consumer.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kombu import Connection, Queue

from observability.logging import get_logger
from workers.runtime.consumer import WorkerConsumer, routing_key_of
from workers.runtime.failures import DEFAULT_RETRY, Failure, RetrySchedule, attempts_of
from workers.runtime.middleware import LogContext, Middleware

log = get_logger(__name__)


@dataclass
class Delivery:
    """One message as a unit of work: its queue, original routing key and (decoded) body."""

    queue: str
    routing_key: str
    body: Any
    message: Any  # acked or routed by the consumer thread only

    @property
    def attempts(self) -> int:
        """How many times this message already failed."""
        return attempts_of(self.message.headers)

    def log_context(self) -> dict[str, Any]:
        return {"routing_key": self.routing_key, "message_id": self.message.properties.get("message_id")}


class MessageConsumer(WorkerConsumer[Delivery, "Failure | None"]):
    """One message per unit, handled by ``handle(delivery) -> Failure | None`` (None: done, ack).

    With ``key`` (a message body -> a hashable, or None) at most ``per_key`` messages of one key
    run at once: the others wait in hand, in their order, without a thread, while threads take
    the messages after them. The write-back keys by connection: a thread given a payment of a
    company whose Intacct slots are all taken would only wait for one, and under load most of
    a process's threads did so while the messages of idle companies waited behind them. Keep
    ``prefetch`` above ``workers`` then, so there are messages of other keys to run.

    With ``share_keys``, ``per_key`` is what all the queue's consumers may run of a key together,
    and this one runs its share: ``per_key`` divided by the queue's consumers, rounded up (at
    least 1), the count asked of the broker when consuming starts and every
    ``share_tick_seconds``. The write-back shares its company cap so: two processes each running
    the cap's worth of one company's payments had twice the cap's payments wait on each other's
    Intacct slots (polled across processes), while other companies' payments waited in hand.
    ``on_share`` is told each new share; ``spare`` more messages of a key than the share are
    started, to wait in line in the handler for what the share guards (the write-back's next
    payment of a company waits in its process for the Intacct slot, so the slot is not idle while
    the payment before it records and reports, and the next is fetched and claimed).
    ``borrowed`` (a key -> a count) is how many more a key may run now beyond the share, for what
    the share guards that this consumer was lent (the write-back's Intacct slots another process
    left free); :meth:`poke` makes the consumer look at its messages in hand again when that grew.
    """

    share_tick_seconds = 1.0

    def __init__(
        self,
        connection: Connection,
        queues: Sequence[Queue],
        handle: Callable[[Delivery], Failure | None],
        *,
        name: str,
        workers: int = 4,
        prefetch: int | None = None,
        key: Callable[[Any], Hashable | None] | None = None,
        per_key: int = 1,
        share_keys: bool = False,
        spare: int = 0,
        on_share: Callable[[int], None] | None = None,
        borrowed: Callable[[Hashable], int] | None = None,
        stop_timeout: float = 60.0,
        poll_interval: float = 1.0,
        middleware: Sequence[Middleware] = (),
        retry: RetrySchedule = DEFAULT_RETRY,
        until_idle: float | None = None,
    ) -> None:
        if per_key < 1:
            raise ValueError("per_key must be at least 1")
        if spare < 0:
            raise ValueError("spare must be 0 or more")
        # By default as many messages in hand as threads to run them: the rest stay available to others.
        super().__init__(
            connection,
            queues,
            name=name,
            workers=workers,
            prefetch=prefetch if prefetch is not None else workers,
            stop_timeout=stop_timeout,
            poll_interval=poll_interval,
            middleware=middleware,
            retry=retry,
            until_idle=until_idle,
        )
        self._handle = handle
        self._key = key
        self._per_key = per_key
        self._share_keys = share_keys
        self._share = per_key  # this consumer's share of per_key (all of it until counted)
        self._spare = spare
        self._on_share = on_share
        self._borrowed = borrowed
        self._share_next = 0.0
        self._waiting: deque[tuple[Delivery, Hashable | None]] = deque()
        # Of each key, the messages a thread runs (counted from submit until the thread is done),
        # and each running message's key: kept as they change, not counted again each iteration.
        self._running_per_key: Counter[Hashable] = Counter()
        self._key_of: dict[int, Hashable] = {}
        self._changed = False  # a message arrived, a thread finished or the share moved since dispatch
        self.dead_lettered_event = f"{name}_dead_lettered"
        self.retry_event = f"{name}_retry_scheduled"

    def accept(self, queue: str, body: Any, message: Any) -> None:
        delivery = Delivery(queue, routing_key_of(message), body, message)
        if self._key is None:
            self.submit(delivery)
        else:
            self._waiting.append((delivery, self._key(body)))
            self._changed = True

    def dispatch(self) -> None:
        """Submit waiting messages, in order, to idle threads, at most ``per_key`` of a key running.

        Only when something changed since the last time: otherwise the messages in hand are the
        ones that could not start then and cannot now."""
        free = self.idle
        if not self._waiting or free <= 0 or not self._changed:
            return
        self._changed = False
        running, limit = self._running_per_key, self._share + self._spare
        lent: dict[Hashable, int] = {}  # asked once a key and dispatch: a lock or two each time
        held: deque[tuple[Delivery, Hashable | None]] = deque()
        while self._waiting and free > 0:
            delivery, key = self._waiting.popleft()
            if key is not None and running[key] >= limit and running[key] - limit >= self._lent(key, lent):
                held.append((delivery, key))
                continue
            self.submit(delivery)
            if key is not None:
                running[key] += 1
                self._key_of[id(delivery)] = key
            free -= 1
        held.extend(self._waiting)
        self._waiting = held

    def _lent(self, key: Hashable, known: dict[Hashable, int]) -> int:
        """How many of ``key`` may run beyond the share and spare now (``known``: asked already)."""
        if self._borrowed is None:
            return 0
        if key not in known:
            known[key] = self._borrowed(key)
        return known[key]

    def poke(self) -> None:
        """Look at the messages in hand again at the next iteration (any thread may call it)."""
        self._changed = True

    def finished(self, unit: Delivery) -> None:
        key = self._key_of.pop(id(unit), None)
        if key is not None:
            self._running_per_key[key] -= 1
            if not self._running_per_key[key]:
                del self._running_per_key[key]
        self._changed = True

    @property
    def key_share(self) -> int:
        """How many messages of one key this consumer runs at once now."""
        return self._share

    def on_consume_ready(self, connection: Any, channel: Any, consumers: Any, **kwargs: Any) -> None:
        super().on_consume_ready(connection, channel, consumers, **kwargs)
        self._share_next = 0.0  # counted again at the first iteration: the consumers changed

    def on_iteration(self) -> None:
        if self._share_keys and self.producer is not None and time.monotonic() >= self._share_next:
            self._share_next = time.monotonic() + self.share_tick_seconds
            self._count_share()
        super().on_iteration()

    def _count_share(self) -> None:
        """This consumer's share of ``per_key``, from the number of consumers of its queue(s)."""
        assert self.producer is not None, "called only while consuming"
        try:
            consumers = max(
                Queue(queue.name, channel=self.producer.channel).queue_declare(passive=True).consumer_count
                for queue in self.queues
            )
        except (*self.connection.connection_errors, *self.connection.channel_errors) as exc:
            # The connection's own loss is handled where the consumer reconnects; keep the share.
            log.warning(f"{self.name}_consumer_count_failed", error=type(exc).__name__)
            return
        share = max(1, -(-self._per_key // max(1, consumers)))
        if share != self._share:
            log.info(f"{self.name}_key_share", consumers=consumers, share=share, per_key=self._per_key)
            self._share = share
            self._changed = True
            if self._on_share is not None:
                self._on_share(share)

    def in_hand(self) -> int:
        return super().in_hand() + len(self._waiting)

    def draining_state(self) -> dict[str, Any]:
        state = super().draining_state()
        return state if self._key is None else {**state, "not_started": len(self._waiting)}

    def on_connection_revived(self) -> None:
        # Received on the channel that died: the broker gives them to a consumer again.
        self._waiting.clear()
        super().on_connection_revived()

    def handle(self, unit: Delivery) -> Failure | None:
        return self._handle(unit)

    def crashed(self, unit: Delivery, exc: Exception) -> Failure | None:
        log.exception(f"{self.name}_handler_crashed")
        return Failure("worker_error", exc, transient=True)  # retried a bounded number of times

    def settle(self, unit: Delivery, outcome: Failure | None) -> None:
        if outcome is None:
            unit.message.ack()
        else:
            self.route(unit.message, unit.queue, outcome)


class MessageHandler(Protocol):
    """What a :class:`QueueConsumer` hands each message to."""

    def handle(self, routing_key: str, body: Any, *, attempts: int) -> Failure | None: ...


class QueueConsumer(MessageConsumer):
    """Consumes one ``queue`` with manual acks and hands each message to ``handler.handle``.

    Every message is logged with its routing key and message id (``LogContext``); ``middleware``
    adds the worker's own steps after that (provisioning's password seal).
    """

    has_delay_queues = True  # the provisioning and write-back queues have theirs (broker.topology)

    def __init__(
        self,
        connection: Connection,
        queue: Queue,
        handler: MessageHandler,
        *,
        name: str,
        workers: int = 4,
        prefetch: int | None = None,
        key: Callable[[Any], Hashable | None] | None = None,
        per_key: int = 1,
        share_keys: bool = False,
        spare: int = 0,
        on_share: Callable[[int], None] | None = None,
        borrowed: Callable[[Hashable], int] | None = None,
        stop_timeout: float = 60.0,
        poll_interval: float = 1.0,
        middleware: Sequence[Middleware] = (),
        retry: RetrySchedule = DEFAULT_RETRY,
    ) -> None:
        super().__init__(
            connection,
            [queue],
            self._handle_delivery,
            name=name,
            workers=workers,
            prefetch=prefetch,
            key=key,
            per_key=per_key,
            share_keys=share_keys,
            spare=spare,
            on_share=on_share,
            borrowed=borrowed,
            stop_timeout=stop_timeout,
            poll_interval=poll_interval,
            middleware=[LogContext(), *middleware],
            retry=retry,
        )
        self.handler = handler

    def _handle_delivery(self, delivery: Delivery) -> Failure | None:
        return self.handler.handle(delivery.routing_key, delivery.body, attempts=delivery.attempts)
