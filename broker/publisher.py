"""A publisher whose every message is confirmed by RabbitMQ, with confirms pipelined.

One pika ``SelectConnection`` per process runs on its own I/O thread. Request threads hand it
messages and wait on a future; the broker's acks (often ``multiple``) resolve many futures at
once, so requests never queue behind each other's round trip and disk flush. When the broker
is down, blocked or slow, futures fail fast and the I/O thread reconnects by itself, to the
next node of the cluster when AMQP_URL names several.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import pika
from pika.exceptions import AMQPError, ShortStringTooLong
from pika.spec import Basic

from broker.urls import describe, pika_parameters
from observability.logging import get_logger
from reliability.errors import Transient

log = get_logger(__name__)


class PublishError(Transient):
    """The broker did not confirm a message; the caller must not report it as accepted."""

    reason = "broker_unavailable"

    outcome = "error"


class BrokerUnavailable(PublishError):
    outcome = "unavailable"


class PublishTimeout(PublishError):
    outcome = "timeout"


class PublishRejected(PublishError):
    outcome = "nack"


class PublishUnroutable(PublishError):
    outcome = "unroutable"


class MessageNotEncodable(PublishError):
    """pika could not put the message into AMQP frames (a property too long, a lone surrogate):
    nothing was sent. Callers check what they publish first; this only keeps the tags right."""

    outcome = "unencodable"


@dataclass(slots=True)
class _Pending:
    future: Future[None]
    message_id: str
    started: float


# Told each outcome with the seconds every message it settles waited: one call per confirm
# frame for the acks (a busy broker acks many messages at once), one per message otherwise.
OutcomeHook = Callable[[str, Sequence[float]], None]

REFUSALS_BEFORE_RECONNECT_SECONDS = 1.0


class ConfirmingPublisher:
    """Publishes persistent messages to one exchange and resolves a future per broker confirm."""

    def __init__(
        self,
        amqp_url: str,
        exchange: str,
        *,
        max_in_flight: int = 10_000,
        reconnect_delays: tuple[float, ...] = (0.1, 0.5, 1.0, 2.0),
        on_outcome: OutcomeHook | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_connection_lost: Callable[[], None] | None = None,
    ) -> None:
        # One parameters object per node: each (re)connect attempt takes the next one, so a
        # lost node is replaced by another without waiting for it to come back.
        self._nodes = pika_parameters(amqp_url)
        if not self._nodes:
            raise ValueError("AMQP_URL names no node")
        self._exchange = exchange
        self._max_in_flight = max_in_flight
        self._reconnect_delays = reconnect_delays
        self._on_outcome = on_outcome or (lambda outcome, waits: None)
        # Called (no I/O allowed) each time a connection is lost or cannot be made: a gap signal.
        self._on_connection_lost = on_connection_lost or (lambda: None)
        self._clock = clock
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connected = threading.Event()
        # Touched only on the I/O thread, except reads of _connection/_channel for readiness.
        self._connection: pika.SelectConnection | None = None
        self._channel: Any = None
        self._blocked = False
        self._pending: dict[int, _Pending] = {}
        # Messages handed over by request threads, drained by one I/O-loop callback per batch:
        # waking the loop once per message serialises every thread on pika's wake-up mutex.
        self._outbox: collections.deque[tuple[Any, ...]] = collections.deque()
        self._wake_lock = threading.Lock()
        self._wake_scheduled = False
        self._returned: set[str] = set()
        self._tags = itertools.count(1)
        # When the broker started refusing (nack) with no ack since; None while it acks.
        self._refusing_since: float | None = None
        self._node = describe(amqp_url).split(", ")[0]

    # -- public API (any thread) ---------------------------------------------------------

    def start(self, wait: float | None = None) -> None:
        """Start the I/O thread; optionally wait up to ``wait`` seconds for the first connect."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="amqp-publisher", daemon=True)
            self._thread.start()
        if wait:
            self._connected.wait(wait)

    @property
    def ready(self) -> bool:
        """True while connected, with a confirming channel, and not blocked by the broker."""
        return self._connected.is_set() and not self._blocked

    @property
    def node(self) -> str:
        """``host:port`` of the node connected to, or being tried (never the credentials)."""
        return self._node

    def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> Future[None]:
        """Publish persistently and mandatorily; the future completes on the broker's confirm."""
        future: Future[None] = Future()
        connection = self._connection
        if not self.ready or connection is None:
            self._fail(future, BrokerUnavailable("not connected to RabbitMQ"), 0.0)
            return future
        if len(self._pending) >= self._max_in_flight:
            self._fail(future, BrokerUnavailable("too many messages awaiting confirms"), 0.0)
            return future
        properties = pika.BasicProperties(
            delivery_mode=pika.DeliveryMode.Persistent,
            content_type=content_type,
            message_id=message_id,
            timestamp=int(time.time()),
            # None, not {}: pika then leaves the field out instead of encoding an empty table.
            headers=dict(headers) if headers else None,
        )
        self._outbox.append((future, routing_key, body, properties, self._clock()))
        with self._wake_lock:
            wake, self._wake_scheduled = not self._wake_scheduled, True
        if wake:
            try:
                connection.ioloop.add_callback_threadsafe(self._drain_outbox)
            except Exception:
                with self._wake_lock:
                    self._wake_scheduled = False
                self._fail_outbox(BrokerUnavailable("connection to RabbitMQ is closing"))
        return future

    def publish_and_wait(
        self, routing_key: str, body: bytes, *, timeout: float, **kwargs: Any
    ) -> Future[None]:
        """Publish and block until confirmed; raises :class:`PublishError` subclasses.

        On timeout the returned-then-raised future keeps running: a late confirm still
        resolves it, so callers can attach a done-callback to reconcile their own state.
        """
        future = self.publish(routing_key, body, **kwargs)
        try:
            future.result(timeout=timeout)
        except FutureTimeout:
            timeout_error = PublishTimeout(f"RabbitMQ did not confirm within {timeout:.1f} s")
            timeout_error.future = future  # type: ignore[attr-defined]
            self._on_outcome("timeout", (timeout,))
            raise timeout_error from None
        return future

    def close(self, timeout: float = 5.0) -> None:
        """Wait (bounded) for outstanding confirms, then close the connection and the thread."""
        deadline = time.monotonic() + timeout
        while (self._outbox or self._pending) and time.monotonic() < deadline and self.ready:
            time.sleep(0.01)
        self._stopping.set()
        connection = self._connection
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.ioloop.add_callback_threadsafe(self._close_on_loop)
        if self._thread is not None:
            self._thread.join(max(0.1, deadline - time.monotonic()))

    # -- I/O thread ----------------------------------------------------------------------

    def _run(self) -> None:
        delays = itertools.chain(self._reconnect_delays, itertools.repeat(self._reconnect_delays[-1]))
        nodes = itertools.cycle(self._nodes)
        failed_in_a_row = 0
        while not self._stopping.is_set():
            params = next(nodes)
            params.connection_attempts = 1
            params.socket_timeout = 2.0
            params.stack_timeout = 3.0
            # A broker that blocks publishers (memory/disk alarm) for this long is treated as
            # down: the connection is dropped and re-established.
            params.blocked_connection_timeout = 10.0
            self._node = f"{params.host}:{params.port}"
            opened_at = self._clock()
            try:
                self._connection = pika.SelectConnection(
                    params,
                    on_open_callback=self._on_connection_open,
                    on_open_error_callback=self._on_connection_open_error,
                    on_close_callback=self._on_connection_closed,
                )
                self._connection.add_on_connection_blocked_callback(self._on_blocked)
                self._connection.add_on_connection_unblocked_callback(self._on_unblocked)
                self._connection.ioloop.start()
            except Exception:
                log.exception("publisher_io_loop_failed", node=self._node)
            was_ready = self._connected.is_set()
            self._connected.clear()
            self._fail_all(BrokerUnavailable("connection to RabbitMQ lost"))
            self._connection = None
            self._channel = None
            if self._stopping.is_set():
                break
            self._on_connection_lost()
            if self._clock() - opened_at > 30:
                # It was up for a while: start the back-off over.
                delays = itertools.chain(self._reconnect_delays, itertools.repeat(self._reconnect_delays[-1]))
            failed_in_a_row = 0 if was_ready else failed_in_a_row + 1
            if failed_in_a_row % len(self._nodes) == 0 or len(self._nodes) == 1:
                # Every node was tried since the last success (or the one there is): back off.
                self._stopping.wait(next(delays))

    def _on_connection_open(self, connection: pika.SelectConnection) -> None:
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_connection_open_error(self, connection: pika.SelectConnection, error: Exception) -> None:
        log.warning("publisher_connect_failed", node=self._node, error=str(error))
        connection.ioloop.stop()

    def _on_connection_closed(self, connection: pika.SelectConnection, reason: Exception) -> None:
        if not self._stopping.is_set():
            log.warning("publisher_connection_closed", node=self._node, reason=str(reason))
        connection.ioloop.stop()

    def _on_channel_open(self, channel: Any) -> None:
        self._channel = channel
        self._tags = itertools.count(1)
        self._refusing_since = None
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(ack_nack_callback=self._on_confirm, callback=self._on_confirm_mode)

    def _on_confirm_mode(self, _frame: Any) -> None:
        self._blocked = False
        self._connected.set()
        log.info("publisher_ready", exchange=self._exchange, node=self._node)

    def _on_channel_closed(self, channel: Any, reason: Exception) -> None:
        # A channel error (e.g. the exchange is missing) fails what is pending; a fresh
        # connection gets a fresh channel.
        self._connected.clear()
        self._fail_all(BrokerUnavailable(f"channel closed: {reason}"))
        if "NOT_FOUND" in str(reason):
            log.error("publisher_exchange_missing", exchange=self._exchange, hint="run `flexsync topology`")
        connection = self._connection
        if connection is not None and connection.is_open:
            connection.close()

    def _on_blocked(self, _connection: Any, _frame: Any) -> None:
        log.warning("publisher_blocked_by_broker")
        self._blocked = True

    def _on_unblocked(self, _connection: Any, _frame: Any) -> None:
        log.info("publisher_unblocked")
        self._blocked = False

    def _drain_outbox(self) -> None:
        # Reset the flag before draining: a message appended meanwhile either is drained by
        # this loop or schedules the next wake-up.
        with self._wake_lock:
            self._wake_scheduled = False
        while self._outbox:
            self._publish_on_loop(*self._outbox.popleft())

    def _fail_outbox(self, error: PublishError) -> None:
        while self._outbox:
            try:
                future, *_rest, started = self._outbox.popleft()
            except IndexError:
                break
            self._fail(future, error, self._clock() - started)

    def _publish_on_loop(
        self, future: Future[None], routing_key: str, body: bytes, properties: Any, started: float
    ) -> None:
        channel = self._channel
        if channel is None or not channel.is_open or not self._connected.is_set():
            self._fail(future, BrokerUnavailable("not connected to RabbitMQ"), self._clock() - started)
            return
        try:
            channel.basic_publish(self._exchange, routing_key, body, properties, mandatory=True)
        except (AMQPError, OSError, ValueError, TypeError, struct.error) as exc:
            # pika marshals every frame before writing any, so a message it refuses (a short
            # string over 255 bytes, a lone surrogate, a header value of no AMQP type) never
            # reached the broker and takes no delivery tag; an exception escaping here would
            # stop the I/O loop and fail every message in flight.
            unencodable = isinstance(exc, (ShortStringTooLong, ValueError, TypeError, struct.error))
            error: PublishError = (
                MessageNotEncodable(f"message cannot be encoded: {type(exc).__name__}: {exc}"[:300])
                if unencodable
                else BrokerUnavailable(f"publish failed: {exc}")
            )
            if unencodable:
                log.error("publisher_message_not_encodable", error=type(exc).__name__)
            self._fail(future, error, self._clock() - started)
            return
        # Counted only once the frames are written: the broker numbers only what it received,
        # and its confirms are matched to messages by these tags.
        self._pending[next(self._tags)] = _Pending(future, properties.message_id or "", started)

    def _on_return(self, _channel: Any, _method: Any, properties: Any, _body: bytes) -> None:
        # basic.return precedes the ack of the same message: remember it to fail that ack.
        self._returned.add(properties.message_id or "")

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        self._note_refusal(isinstance(method, Basic.Nack))
        if method.multiple:
            # Tags are inserted in increasing order, so the acked ones are a prefix.
            tags = list(itertools.takewhile(lambda t: t <= method.delivery_tag, self._pending))
        else:
            tags = [method.delivery_tag]
        now = self._clock()
        acked: list[float] = []
        for tag in tags:
            pending = self._pending.pop(tag, None)
            if pending is None:
                continue
            elapsed = now - pending.started
            if isinstance(method, Basic.Nack):
                self._fail(pending.future, PublishRejected("RabbitMQ refused the message"), elapsed)
            elif pending.message_id in self._returned:
                self._returned.discard(pending.message_id)
                self._fail(
                    pending.future, PublishUnroutable("no queue is bound for this routing key"), elapsed
                )
            else:
                acked.append(elapsed)
                if not pending.future.done():
                    pending.future.set_result(None)
        if acked:
            self._on_outcome("ack", acked)

    def _note_refusal(self, refused: bool) -> None:
        # After a cluster node is lost, a channel opened while its queues were changing leader
        # can be refused for good (seen on RabbitMQ 3.10); refusals lasting this long therefore
        # get a new connection, to the next node, whose channel sees the current leaders.
        now = self._clock()
        if not refused:
            self._refusing_since = None
        elif self._refusing_since is None:
            self._refusing_since = now
        elif now - self._refusing_since >= REFUSALS_BEFORE_RECONNECT_SECONDS:
            log.warning("publisher_refused_reconnecting", node=self._node)
            self._refusing_since = None
            connection = self._connection
            if connection is not None and connection.is_open:
                connection.close()

    def _fail(self, future: Future[None], error: PublishError, elapsed: float) -> None:
        self._on_outcome(error.outcome, (elapsed,))
        if not future.done():
            future.set_exception(error)

    def _fail_all(self, error: PublishError) -> None:
        with self._wake_lock:
            # A wake-up scheduled on a dead loop never runs: the next publish must schedule anew.
            self._wake_scheduled = False
        self._fail_outbox(error)
        pending, self._pending = self._pending, {}
        self._returned.clear()
        now = self._clock()
        for item in pending.values():
            self._fail(item.future, error, now - item.started)

    def _close_on_loop(self) -> None:
        connection = self._connection
        if connection is not None and connection.is_open:
            connection.close()
        elif connection is not None:
            connection.ioloop.stop()
