"""Reading a stream from an offset on the worker runtime (the archive replay's shape).

A stream keeps its messages; a reader says where to start (``x-stream-offset``: ``first``, a
timestamp, a number) and reads on. Each message goes to ``take(message)`` on the consumer thread,
which answers whether to read on; ``idle()`` runs on each turn of the loop (it may raise to end
the read, e.g. when the stream stalled). Acknowledging a stream message removes nothing, it only
grants credit for more, so acks go out every half prefetch. A lost connection is taken up again
by the runtime from the offset after the last message read, so nothing is read twice; after
``reconnects`` failed attempts in a row the broker's error ends the read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kombu import Connection, Queue

from reliability.errors import FlexsyncError
from workers.runtime.consumer import WorkerConsumer

STREAM_OFFSET = "x-stream-offset"


class GaveUp(FlexsyncError, RuntimeError):
    """The broker could not be reached again after ``reconnects`` attempts (not a connection
    error, so the runtime does not take it up again)."""

    reason = "broker_unreachable"


class StreamReader(WorkerConsumer[None, None]):
    """Reads ``stream`` from ``offset`` into ``take`` until it answers False or ``stop()``."""

    raw = True  # a stream's messages are handed over as they are

    def __init__(
        self,
        connection: Connection,
        stream: str,
        *,
        offset: Any,
        take: Callable[[Any], bool],
        idle: Callable[[], None] = lambda: None,
        prefetch: int = 2000,
        reconnects: int = 3,
        poll_interval: float = 0.1,
    ) -> None:
        super().__init__(
            connection,
            [self._queue(stream, offset)],
            name="stream_reader",
            workers=1,
            prefetch=prefetch,
            poll_interval=poll_interval,
        )
        self._stream = stream
        self._take = take
        self._idle = idle
        self._credit_every = max(1, prefetch // 2)
        self._unacked = 0
        self._reconnects = reconnects
        self._failures = 0
        self.last_offset: int | None = None
        self.read = 0

    @staticmethod
    def _queue(stream: str, offset: Any) -> Queue:
        # The stream's declaration (its retention) is the topology's: consume it, never declare it.
        return Queue(stream, no_declare=True, consumer_arguments={STREAM_OFFSET: offset})

    def get_consumers(self, consumer_class: Any, channel: Any) -> list[Any]:
        if self.last_offset is not None:  # after a reconnect: on from the next one
            self.queues = [self._queue(self._stream, self.last_offset + 1)]
        self._unacked = 0
        return super().get_consumers(consumer_class, channel)

    def on_consume_ready(self, connection: Any, channel: Any, consumers: Any, **kwargs: Any) -> None:
        self._failures = 0
        super().on_consume_ready(connection, channel, consumers, **kwargs)

    def on_connection_error(self, exc: Exception, interval: float) -> None:
        self._failures += 1
        if self._failures > self._reconnects:
            self.should_stop = True
            raise GaveUp(f"{type(exc).__name__} after {self._reconnects} reconnects") from None
        super().on_connection_error(exc, interval)

    def accept(self, queue: str, body: Any, message: Any) -> None:
        if self.should_stop:
            return  # delivered before the stop took effect: left unread (a stream keeps it)
        # Taken first, its offset recorded next, the credit last: a message read from the socket
        # after the connection died is still taken, and its ack failing (the connection error the
        # runtime reconnects on) cannot make the reader go on past it unread.
        if not self._take(message):
            self.should_stop = True
        offset = (message.headers or {}).get(STREAM_OFFSET)
        if isinstance(offset, int):
            self.last_offset = offset
        self.read += 1
        self._unacked += 1
        if self._unacked >= self._credit_every:
            self._unacked = 0
            message.ack(multiple=True)

    def on_iteration(self) -> None:
        super().on_iteration()
        if not self.should_stop:
            self._idle()
