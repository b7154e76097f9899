"""The one worker runtime: kombu's ConsumerMixin, units of work in a thread pool, settled on the consumer thread.

The consumer thread alone touches the broker. It receives messages (through the middleware's
``before_receive``), turns them into units of work (``accept``), hands units to the pool, and
settles finished ones: ack, or publish a copy to a delay queue or the dead-letter queue with the
broker's confirm and then ack (``route``). Nothing is acknowledged before it is done or safely
re-routed. A reconnect bumps the generation: outcomes of units received on the dead channel are
moot (the broker gave their messages back). On ``stop()`` it takes no more messages, lets running
units finish and settles them on the still-open channel (``on_consume_end``).

A new worker plugs in one of two ways:

* one message in, ``Failure | None`` out (provisioning, writeback): a
  :class:`workers.runtime.messages.QueueConsumer` over one queue, with a handler whose
  ``handle(routing_key, body, attempts=...)`` returns ``None`` (ack) or a ``Failure``; e.g. the
  writeback worker (``processes/writeback.py``)::

      consumer = QueueConsumer(parts.amqp_connection(), queue, handler, name="writeback")

  and its process is ``run_worker("writeback", consumer, ...)`` (``workers.runtime.process``).
* any other shape (sync's coalesced groups, the dead-letter storer's batches): subclass
  :class:`WorkerConsumer` and define ``accept`` (message -> unit, or hold it back and submit
  later from ``dispatch``), ``handle`` (worker thread), ``crashed`` and ``settle`` (consumer
  thread: ``message.ack()`` or ``route``).

Two more ways to run the same loop: ``until_idle`` makes ``run()`` return once nothing arrived
for that long and nothing is in hand (a command that stores what waits now), with a lost broker
raised rather than retried; ``on_consuming(True/False)`` tells a subclass when it starts and stops
consuming (a listener whose process must know whether it hears announcements). Readers of a
stream from an offset are :mod:`workers.runtime.stream`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from functools import partial
from typing import Any, Generic, TypeVar

from amqp.exceptions import MessageNacked
from kombu import Connection, Producer, Queue
from kombu.exceptions import ChannelError
from kombu.exceptions import OperationalError as BrokerUnreachable
from kombu.mixins import ConsumerMixin

from broker.topology import delay_queue_name
from observability.logging import get_logger
from reliability.errors import FlexsyncError
from workers.runtime.failures import (
    DEFAULT_RETRY,
    ORIGINAL_ROUTING_KEY,
    Destination,
    Failure,
    RetrySchedule,
    destination,
    due_at,
    reroute,
    where_it_exists,
)
from workers.runtime.middleware import Middleware, MiddlewareChain, Rejected

log = get_logger(__name__)

U = TypeVar("U")
R = TypeVar("R")  # a unit's outcome


class _StopRequested(FlexsyncError):
    """Raised between reconnect attempts once ``stop()`` was asked: nothing is in hand then."""

    reason = "stopping"


# A lost or refusing broker that kombu's ConsumerMixin.run lets out although it reconnects on
# the transport's own errors: ``conn.default_channel`` re-checks a connection just made and, when
# it dropped again (a node stopping, a cluster electing), retries only for ``connect_timeout``
# and then raises kombu's OperationalError; a publish to a delay queue the broker nacks raises
# amqp's MessageNacked, which is no AMQPError. Either once killed the worker with code 1.
# Delayed messages moved back per iteration of the consumer loop when a breaker closed.
RELEASE_BATCH = 200

BROKER_FAILURES: tuple[type[Exception], ...] = (BrokerUnreachable, MessageNacked)

# The delay pump: the delay queues have no TTL (broker.topology says why), so the workers of a
# work queue move its delayed messages back once their ``x-flexsync-due-at`` has come. Each tick
# asks each delay queue how many messages it holds (a query, not a command in the queue's log);
# one that holds some has its head taken: due, it moves (the copy confirmed before the ack) and
# the next is taken; not yet due, it goes back and the queue is not looked at again until then.
# So a delayed message comes back at most one tick late, and each worker takes it at most twice.
PUMP_TICK_SECONDS = 1.0


def routing_key_of(message: Any) -> str:
    """The message's routing key as first published (back from a delay queue it is the queue's name)."""
    headers = message.headers or {}
    return headers.get(ORIGINAL_ROUTING_KEY) or message.delivery_info.get("routing_key", "")


class WorkerConsumer(ConsumerMixin, Generic[U, R]):
    """Consumes ``queues``; subclasses say how messages become units and how outcomes settle."""

    dead_lettered_event = "message_dead_lettered"
    retry_event: str | None = None  # logged when a message goes to a delay queue
    raw = False  # True: ``accept`` gets every message undecoded (body None), whatever its content type
    # True: each of ``queues`` has the delay queues of ``retry`` (broker.topology), and this
    # worker moves their messages back when due (the delay pump; False: it never looks at them).
    has_delay_queues = False
    pump_tick_seconds = PUMP_TICK_SECONDS

    def __init__(
        self,
        connection: Connection,
        queues: Sequence[Queue],
        *,
        name: str,
        workers: int,
        prefetch: int | None = None,
        stop_timeout: float = 30.0,
        poll_interval: float = 1.0,
        middleware: Sequence[Middleware] = (),
        retry: RetrySchedule = DEFAULT_RETRY,
        until_idle: float | None = None,
    ) -> None:
        self.connection = connection
        self.retry = retry
        self.name = name
        self.poll_interval = poll_interval
        self.queues = list(queues)
        self.workers = workers
        self.middleware = MiddlewareChain(middleware)
        self._prefetch = prefetch if prefetch is not None else workers
        self._stop_timeout = stop_timeout
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=name)
        self._running: dict[Future[R], tuple[U, int]] = {}
        # Futures done and not yet settled, appended by the thread that finished each: the
        # consumer thread settles them without looking at every running one each iteration.
        self._finished: deque[Future[R]] = deque()
        self.generation = 0
        self.producer: Producer | None = None
        self.until_idle = until_idle
        self._last_received = time.monotonic()
        self._release = threading.Event()
        self._releasing: dict[str, str] | None = None  # delay queue -> its work queue, while releasing
        self._left: dict[str, int] = {}  # of each, the messages still to release
        self._pump_next = 0.0
        self._pumped: dict[str, str] = {}  # the delay queues found on this connection -> work queue
        self._not_before: dict[str, float] = {}  # delay queue -> when its head is due (monotonic)
        if until_idle is not None:
            # A command: an unreachable broker is its answer, not a wait (kombu's stub types it None).
            self.connect_max_retries = 1  # type: ignore[assignment]

    # -- what a worker defines -------------------------------------------------------------------

    def accept(self, queue: str, body: Any, message: Any) -> None:
        """Turn a received message into work: ``submit`` a unit now, or keep it for ``dispatch``."""
        raise NotImplementedError

    def dispatch(self) -> None:
        """Each iteration on the consumer thread: submit units held back by ``accept``."""

    def handle(self, unit: U) -> R:
        """Process one unit (on a worker thread, never touching the broker)."""
        raise NotImplementedError

    def crashed(self, unit: U, exc: Exception) -> R:
        """The outcome of a unit whose handler raised (called inside the ``except``)."""
        raise NotImplementedError

    def settle(self, unit: U, outcome: R) -> None:
        """Ack or ``route`` each of the unit's messages (consumer thread)."""
        raise NotImplementedError

    def route_headers(self, message: Any, failure: Failure) -> dict[str, Any]:
        """The headers a failed message's next destination is chosen from (its own, by default)."""
        return dict(message.headers or {})

    def queue_of(self, message: Any) -> str:
        """The queue a message that could not even be decoded came from."""
        return self.queues[0].name if len(self.queues) == 1 else "unknown"

    def in_hand(self) -> int:
        """Messages received and not yet settled (``until_idle`` waits for none)."""
        return len(self._running)

    def finished(self, unit: U) -> None:
        """On the consumer thread, once a unit's thread is done with it (before it is settled)."""

    def on_consuming(self, consuming: bool) -> None:
        """Called with True once the consumers are registered, with False when consuming ends."""

    def draining_state(self) -> dict[str, Any]:
        """Fields of the ``<name>_draining`` log line."""
        return {"in_flight": len(self._running)}

    # -- kombu hooks -------------------------------------------------------------------------------

    def get_consumers(self, consumer_class: Any, channel: Any) -> list[Any]:
        channel.basic_qos(0, self._prefetch, False)
        # Retries and dead letters go out on the consuming channel, which the mixin renews on
        # every reconnect; with confirm_publish each publish waits for the broker's ack.
        self.producer = Producer(channel)
        if self.raw:
            return [
                consumer_class(queues=[queue], on_message=partial(self._receive, queue.name, None))
                for queue in self.queues
            ]
        return [
            consumer_class(queues=[queue], callbacks=[partial(self._receive, queue.name)], accept=["json"])
            for queue in self.queues
        ]

    def on_connection_revived(self) -> None:
        self.generation += 1
        self.producer = None
        # A release cut short by the reconnect is not taken up again (were the cause the release
        # itself, it would loop): what it left comes back as its delays run out.
        self._releasing = None
        self._not_before.clear()  # what this worker put back is for any worker to take again

    def on_consume_ready(self, connection: Any, channel: Any, consumers: Any, **kwargs: Any) -> None:
        self._last_received = time.monotonic()
        if self.has_delay_queues:
            self._pumped = self._existing_delay_queues(connection)
        self.on_consuming(True)

    def consume(self, *args: Any, **kwargs: Any) -> Iterator[None]:
        try:
            yield from super().consume(*args, **kwargs)
        finally:  # stopped, or the connection was lost: not consuming until the next ready
            self.on_consuming(False)

    def release_delayed(self) -> None:
        """Move what waits in the delay queues of ``queues`` back to them now (any thread may ask;
        the consumer thread does it): a peer whose breaker just closed is answering again, and the
        work held back for it must not sit out the rest of its delays."""
        self._release.set()

    def _release_delayed(self, budget: int = RELEASE_BATCH) -> None:
        """Up to ``budget`` delayed messages back to their work queue, each copy confirmed before
        the delayed one is acked. What is released is what waited when the release was asked for:
        a message held again meanwhile (for a peer still down) is not taken round a second time."""
        assert self.producer is not None, "called only while consuming"
        channel = self.producer.channel
        if self._release.is_set() or self._releasing is None:
            self._release.clear()
            # Not the shortest delay: it is over in moments, and a recheck's copy must wait it out.
            self._releasing = {
                delay_queue_name(queue.name, delay): queue.name
                for queue in self.queues
                for delay in sorted(set(self.retry.delays))[1:]
            }
            self._left = {
                name: Queue(name, channel=channel).queue_declare(passive=True).message_count
                for name in self._releasing
            }
        moved = 0
        for name, work_queue in self._releasing.items():
            delayed = Queue(name, channel=channel)
            while moved < budget and self._left[name] > 0:
                message = delayed.get(no_ack=False)
                if message is None:
                    self._left[name] = 0
                    break
                reroute(
                    self.producer, message, Destination(work_queue, dict(message.headers or {}), dead=False)
                )
                self._left[name] -= 1
                moved += 1
        if not any(self._left.values()):
            self._releasing = None
        if moved:
            log.info(f"{self.name}_delayed_released", messages=moved, more=self._releasing is not None)

    def _existing_delay_queues(self, connection: Connection) -> dict[str, str]:
        """Each delay queue of ``queues`` that exists, and the work queue its messages go back to.

        Each is asked for on a channel of its own: a missing queue closes only that channel (on
        the consuming one it would cost a reconnect, every tick). One that is missing is logged."""
        found = {}
        errors = (*connection.channel_errors, ChannelError)
        for queue in self.queues:
            for delay in sorted(set(self.retry.delays)):
                name = delay_queue_name(queue.name, delay)
                channel = connection.channel()
                try:
                    Queue(name, channel=channel).queue_declare(passive=True)
                    found[name] = queue.name
                except errors:
                    log.warning(
                        f"{self.name}_delay_queue_missing",
                        queue=name,
                        hint="declare the topology with FLEXSYNC_RETRY_DELAYS as this worker has it",
                    )
                finally:
                    with contextlib.suppress(Exception):
                        channel.close()
        return found

    def _pump_delayed(self, budget: int = RELEASE_BATCH) -> int:
        """Delayed messages whose time has come, back to their work queue (see PUMP_TICK_SECONDS).

        A message without ``x-flexsync-due-at`` is due at once. Returns how many moved."""
        assert self.producer is not None, "called only while consuming"
        channel = self.producer.channel
        moved = 0
        for name, work_queue in self._pumped.items():
            if self._not_before.get(name, 0.0) > time.monotonic():
                continue
            delayed = Queue(name, channel=channel)
            if not delayed.queue_declare(passive=True).message_count:
                continue
            while moved < budget:
                message = delayed.get(no_ack=False)
                if message is None:
                    break
                due = due_at(message.headers)
                wait = 0.0 if due is None else (due - datetime.now(UTC)).total_seconds()
                if wait > 0:
                    message.requeue()
                    self._not_before[name] = time.monotonic() + wait
                    break
                reroute(
                    self.producer, message, Destination(work_queue, dict(message.headers or {}), dead=False)
                )
                moved += 1
        return moved

    def on_iteration(self) -> None:
        if (self._release.is_set() or self._releasing is not None) and self.producer is not None:
            self._release_delayed()
        if self.has_delay_queues and self.producer is not None and time.monotonic() >= self._pump_next:
            self._pump_next = time.monotonic() + self.pump_tick_seconds
            self._pump_delayed()
        # Settled first: the threads and keys they free are dispatched again in the same turn.
        self._settle(block=False)
        self.dispatch()
        if (
            self.until_idle is not None
            and not self.in_hand()
            and time.monotonic() - self._last_received >= self.until_idle
        ):
            self.should_stop = True

    def on_consume_end(self, connection: Any, channel: Any) -> None:
        # Graceful stop: finish what runs, settle it on this still-open channel.
        log.info(f"{self.name}_draining", **self.draining_state())
        self._settle(block=True)

    def on_connection_error(self, exc: Exception, interval: float) -> None:
        """Between attempts to reach the broker: give up if told to stop, else say when it tries again."""
        if self.should_stop:
            raise _StopRequested from None
        log.warning(f"{self.name}_broker_unreachable", retry_in=interval, error=type(exc).__name__)

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        self.route(message, self.queue_of(message), Failure("malformed_message", exc, transient=False))

    # -- receiving, dispatching, settling ------------------------------------------------------------

    def _receive(self, queue: str, body: Any, message: Any) -> None:
        self._last_received = time.monotonic()
        try:
            self.accept(queue, self.middleware.receive(message, body), message)
        except Rejected as rejected:
            self.route(message, queue, rejected.failure)

    @property
    def idle(self) -> int:
        """Threads with nothing to do right now."""
        return self.workers - (len(self._running) - len(self._finished))

    def submit(self, unit: U) -> None:
        """Hand ``unit`` to the pool; its outcome is settled by a later iteration."""
        future = self._pool.submit(self.middleware.process, unit, self.handle, self.crashed)
        self._running[future] = (unit, self.generation)
        future.add_done_callback(self._finished.append)

    def _settle(self, *, block: bool) -> None:
        done: list[Future[R]] = []
        if block and self._running:
            wait(list(self._running), timeout=self._stop_timeout)
            # A future's waiters are woken before its done-callbacks run: after the wait, the
            # done ones are taken from the running, not only from the queue they append to.
            done = [future for future in self._running if future.done()]
        while self._finished:
            done.append(self._finished.popleft())
        for future in done:
            entry = self._running.pop(future, None)
            if entry is None:
                continue  # settled already, by a blocking settle before its callback ran
            unit, generation = entry
            self.finished(unit)
            if generation != self.generation:
                continue
            try:
                outcome = future.result()
            except Exception as exc:  # an after_process hook failed: settled like a handler crash
                outcome = self.crashed(unit, exc)
            self.middleware.settle(unit, outcome, self.producer, self.settle)

    def route(self, message: Any, queue: str, failure: Failure) -> None:
        """Publish the message to its delay queue or the dead-letter queue (confirmed), then ack."""
        routing_key = routing_key_of(message)
        target = destination(
            failure,
            queue=queue,
            routing_key=routing_key,
            headers=self.route_headers(message, failure),
            policy=self.retry,
        )
        if self.has_delay_queues:
            # Only into a delay queue this connection found (on_consume_ready): one the broker
            # lacks would drop the copy, confirm it, and the ack would lose the message.
            meant, target = target.queue, where_it_exists(target, self._pumped, self.retry.delays)
            if target.queue != meant:
                log.warning(f"{self.name}_delay_queue_missing", queue=meant, instead=target.queue)
        assert self.producer is not None, "messages arrive only after get_consumers"
        body = self.middleware.route(message, target, message.body)
        reroute(self.producer, message, target, body=body)
        self._log_routed(failure, target, queue, routing_key)

    def _log_routed(self, failure: Failure, target: Destination, queue: str, routing_key: str) -> None:
        if target.dead:
            log.warning(self.dead_lettered_event, reason=failure.reason, queue=queue, routing_key=routing_key)
        elif self.retry_event is not None:
            log.warning(self.retry_event, reason=failure.reason, queue=target.queue, routing_key=routing_key)

    def run(self, _tokens: int = 1, **kwargs: Any) -> None:
        """Consume until ``stop()`` (or, with ``until_idle``, until idle); finished units are settled
        at least every ``poll_interval`` seconds. Without ``until_idle`` a lost broker is reconnected."""
        kwargs.setdefault("safety_interval", self.poll_interval)
        try:
            if self.until_idle is None:
                while not self.should_stop:
                    try:
                        super().run(_tokens, **kwargs)
                    except BROKER_FAILURES as exc:
                        # The connection is closed on the way out (unacked messages go back to
                        # the queue); the next round reconnects, paced by the mixin's bucket.
                        log.warning(
                            f"{self.name}_broker_lost", error=type(exc).__name__, detail=str(exc)[:200]
                        )
                return
            for _ in self.consume(limit=None, **kwargs):
                pass
        except _StopRequested:
            log.info(f"{self.name}_stopped_while_reconnecting")

    def stop(self) -> None:
        """Ask the loop to stop after the current iteration (safe from a signal handler)."""
        self.should_stop = True

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
