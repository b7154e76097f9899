"""Each receiver process's listener on ``flexsync.connections.changed``: evicts the changed
connection from the process's cache, so a disconnect is answered 410 from the next request on.

The process binds an exclusive, auto-deleted queue of its own to the fanout and consumes it on
the worker runtime (workers/runtime/consumer.py), on a thread of the receiver: the runtime
reconnects when the broker goes away, and redeclares the queue (the broker deleted it with the
old connection). While the listener is not consuming (starting, or the broker away) the cache
keeps entries only for its short fallback TTL; once it consumes again the cache starts over,
since announcements may have been missed meanwhile.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from typing import Any

from kombu import Connection, Queue

from broker.topology import CONNECTION_CHANGES_EXCHANGE
from broker.urls import kombu_connection
from observability.logging import get_logger
from workers.runtime.messages import Delivery, MessageConsumer
from workers.runtime.process import InBackground

log = get_logger(__name__)


class ChangeConsumer(MessageConsumer):
    """Consumes announcements into ``cache.invalidate``; tells the cache when it (stops) listening."""

    raw = True  # an unreadable announcement evicts everything rather than going to dead-letter

    def __init__(self, connection: Connection, queue: Queue, cache: Any, listening: threading.Event) -> None:
        super().__init__(connection, [queue], self._announced, name="connection_changes", workers=1)
        self._cache = cache
        self._listening = listening

    def on_consuming(self, consuming: bool) -> None:
        if consuming:
            # Consuming now: whatever changed before this point is read afresh from the store.
            self._listening.set()
            self._cache.set_listening(True)
            log.info("connection_changes_listening", queue=self.queues[0].name)
        elif self._listening.is_set():
            self._listening.clear()
            self._cache.set_listening(False)
            if not self.should_stop:
                log.warning("connection_changes_listener_lost")

    def _announced(self, delivery: Delivery) -> None:
        body = delivery.message.body
        try:
            document = json.loads(body)
            connection_id = document.get("connectionId")
        except (ValueError, AttributeError):
            log.warning("connection_change_unreadable")
            self._cache.invalidate()
            return None
        self._cache.invalidate(connection_id if isinstance(connection_id, str) else None)
        return None


class ConnectionChangeListener:
    """The receiver's listener: a :class:`ChangeConsumer` on a daemon thread."""

    def __init__(self, amqp_url: str, cache: Any, *, poll_interval: float = 0.5) -> None:
        self._listening = threading.Event()
        self.queue_name = (
            f"{CONNECTION_CHANGES_EXCHANGE.name}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        )
        queue = Queue(
            self.queue_name,
            exchange=CONNECTION_CHANGES_EXCHANGE,
            routing_key="",
            durable=False,
            exclusive=True,
            auto_delete=True,
        )
        connection = kombu_connection(amqp_url, connect_timeout=2, heartbeat=10)
        self.consumer = ChangeConsumer(connection, queue, cache, self._listening)
        self.consumer.poll_interval = poll_interval
        self._background = InBackground(self.consumer, "connection-changes")

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    @property
    def running(self) -> bool:
        """Its thread is still alive (consuming, or trying to reach the broker)."""
        return self._background.alive

    def start(self, wait: float | None = None) -> None:
        self._background.start()
        if wait:
            self._listening.wait(wait)

    def close(self, timeout: float = 2.0) -> None:
        self._background.close(timeout)
