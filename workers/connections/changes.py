"""Announcing a connection's change (disconnect, reconnect, new webhook secret) to every receiver.

The message goes to the fanout ``flexsync.connections.changed`` after the store's change has
committed; each receiver process evicts the connection from its cache on it
(``ingest.connection_changes``). An announcement that cannot be made is logged, never raised:
the change itself is stored, and the receivers' cache TTL is the safety net.
"""

from __future__ import annotations

import contextlib
import json
import threading
from datetime import UTC, datetime
from typing import Any

from kombu import Connection

from broker.topology import CONNECTION_CHANGES_EXCHANGE
from broker.urls import kombu_connection
from observability.logging import get_logger

log = get_logger(__name__)


def change_message(connection_id: str | None, change: str) -> bytes:
    """The announcement's body; a ``connectionId`` of None means every connection."""
    at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps({"connectionId": connection_id, "change": change, "at": at}).encode()


class ConnectionChanges:
    """Publishes announcements on one kombu connection, reopened after a failure."""

    def __init__(self, amqp_url: str, *, timeout: float = 2.0) -> None:
        self._url = amqp_url
        self._timeout = timeout
        self._lock = threading.Lock()
        self._connection: Connection | None = None

    def announce(self, connection_id: str | None, change: str) -> bool:
        """Tell every receiver; True when the broker confirmed the message."""
        body = change_message(connection_id, change)
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._connection is None:
                        # Confirmed: once announce returns, the broker has put the message in
                        # every receiver's queue, so the next webhook meets an evicted cache.
                        self._connection = kombu_connection(
                            self._url, heartbeat=0, connect_timeout=self._timeout, confirm_publish=True
                        )
                    producer = self._connection.Producer()
                    producer.publish(
                        body,
                        exchange=CONNECTION_CHANGES_EXCHANGE,
                        routing_key="",
                        content_type="application/json",
                        content_encoding="utf-8",
                        delivery_mode=1,  # transient: the receivers' queues live only with them
                        timeout=self._timeout,
                    )
                    return True
                except Exception as exc:
                    self._drop()
                    if attempt == 2:
                        log.warning(
                            "connection_change_not_announced",
                            connection_id=connection_id,
                            change=change,
                            error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                        )
        return False

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            # It failed already; releasing it may fail too.
            with contextlib.suppress(Exception):
                connection.release()


class AnnouncingStore:
    """A :class:`workers.connections.store.ConnectionStore` that announces each change it commits.

    Wrapping the store keeps the callers (the provisioning handler) unchanged: every write
    that changes what a receiver answers is followed by its announcement.
    """

    def __init__(self, store: Any, changes: ConnectionChanges) -> None:
        self._store = store
        self._changes = changes

    def save(self, connection_id: str, *args: Any, **kwargs: Any) -> Any:
        record = self._store.save(connection_id, *args, **kwargs)
        self._changes.announce(connection_id, "saved")
        return record

    def set_state(self, connection_id: str, state: str) -> None:
        self._store.set_state(connection_id, state)
        self._changes.announce(connection_id, state)

    def disconnect(self, connection_id: str) -> bool:
        changed = self._store.disconnect(connection_id)
        if changed:
            self._changes.announce(connection_id, "disconnected")
        return changed

    def __getattr__(self, name: str) -> Any:
        # Reads (get, list, live_for_account, secrets) go to the store as they are.
        return getattr(self._store, name)
