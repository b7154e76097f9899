"""Keeping a claimed backfill: the lease renewed in the background while the import runs.

The heartbeat also watches the connection: once it is disconnected (or the run cancelled,
restarted or taken over) ``lost`` is set and the import stops at its next page.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from observability.logging import get_logger
from store.backfill import BackfillStore

log = get_logger(__name__)


def new_holder() -> str:
    """A holder id naming this host, process and thread, unique per claim."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:12]}"


def holder_is_dead(holder: str | None) -> bool:
    """True only for a holder of this host whose process is gone (killed mid-run)."""
    parts = (holder or "").rsplit(":", 3)
    if len(parts) != 4 or parts[0] != socket.gethostname()[:80] or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Heartbeat:
    """Renews ``holder``'s lease every third of ``lease_seconds`` until stopped or lost."""

    def __init__(
        self,
        store: BackfillStore,
        connections: Any,
        connection_id: str,
        holder: str,
        lease_seconds: float,
    ) -> None:
        self._store = store
        self._connections = connections
        self._connection_id = connection_id
        self._holder = holder
        self._lease_seconds = lease_seconds
        self._stopped = threading.Event()
        self.lost = threading.Event()
        self.reason: str | None = None
        self._thread = threading.Thread(
            target=self._beat, name=f"backfill-lease-{connection_id}", daemon=True
        )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stopped.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stopped.wait(self._lease_seconds / 3):
            try:
                connection = self._connections.get(self._connection_id)
                if connection is None or not connection.is_active:
                    self._lose("connection disconnected")
                    return
                if not self._store.renew(self._connection_id, self._holder, self._lease_seconds):
                    self._lose("run cancelled, restarted or taken over")
                    return
            except SQLAlchemyError as exc:
                # The next beat tries again; the lease has two more beats' worth of time left.
                log.warning(
                    "backfill_lease_renewal_failed",
                    connection_id=self._connection_id,
                    error=type(exc).__name__,
                )

    def _lose(self, reason: str) -> None:
        self.reason = reason
        self.lost.set()
        log.info("backfill_lease_lost", connection_id=self._connection_id, reason=reason)
