"""Each receiver process's listener on ``flexsync.connections.changed``: evicts the changed
connection from the process's cache, so a disconnect is answered 410 from the next request on.

The process binds an exclusive, auto-deleted queue of its own to the fanout. While the listener
is not consuming (starting, or the broker away) the cache keeps entries only for its short
fallback TTL; once it consumes again the cache starts over, since announcements may have been
missed meanwhile.
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
from broker.urls import kombu_url
from observability.logging import get_logger

log = get_logger(__name__)


class ConnectionChangeListener:
    """A daemon thread consuming announcements into ``cache.invalidate``."""

    def __init__(self, amqp_url: str, cache: Any, *, reconnect_delay: float = 1.0) -> None:
        self._url = amqp_url
        self._cache = cache
        self._reconnect_delay = reconnect_delay
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None
        self.queue_name = (
            f"{CONNECTION_CHANGES_EXCHANGE.name}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        )

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    def start(self, wait: float | None = None) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="connection-changes", daemon=True)
            self._thread.start()
        if wait:
            self._listening.wait(wait)

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._consume()
            except Exception as exc:
                log.warning(
                    "connection_changes_listener_lost",
                    error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                )
            finally:
                if self._listening.is_set():
                    self._listening.clear()
                    self._cache.set_listening(False)
            self._stop.wait(self._reconnect_delay)

    def _consume(self) -> None:
        queue = Queue(
            self.queue_name,
            exchange=CONNECTION_CHANGES_EXCHANGE,
            routing_key="",
            durable=False,
            exclusive=True,
            auto_delete=True,
        )
        with Connection(
            kombu_url(self._url), connect_timeout=2, heartbeat=10, failover_strategy="round-robin"
        ) as connection:
            connection.ensure_connection(max_retries=1)
            with connection.Consumer(queue, callbacks=[self._on_message], accept=["json"], no_ack=True):
                # Consuming now: whatever changed before this point is read afresh from the store.
                self._listening.set()
                self._cache.set_listening(True)
                log.info("connection_changes_listening", queue=self.queue_name)
                while not self._stop.is_set():
                    try:
                        connection.drain_events(timeout=1.0)
                    except TimeoutError:
                        connection.heartbeat_check()

    def _on_message(self, body: Any, message: Any) -> None:
        try:
            document = body if isinstance(body, dict) else json.loads(body)
            connection_id = document.get("connectionId")
        except (ValueError, AttributeError):
            log.warning("connection_change_unreadable")
            self._cache.invalidate()
            return
        self._cache.invalidate(connection_id if isinstance(connection_id, str) else None)
