"""Keeping a claimed backfill: the lease renewed in the background while the import runs.

The heartbeat also watches the connection: once it is disconnected (or the run cancelled,
restarted or taken over) ``lost`` is set and the import stops at its next page. Holder ids and
the dead-holder check are the one lease policy's (``reliability.leases``).
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from reliability.errors import LeaseLost
from reliability.leases import Renewal, holder_is_dead, new_holder
from workers.backfill.store import BackfillStore

__all__ = ["Heartbeat", "holder_is_dead", "new_holder"]


class Heartbeat:
    """Renews ``holder``'s lease every third of ``lease_seconds`` on a thread until stopped or lost."""

    def __init__(
        self,
        store: BackfillStore,
        connections: Any,
        connection_id: str,
        holder: str,
        lease_seconds: float,
    ) -> None:
        def renew() -> bool:
            connection = connections.get(connection_id)
            if connection is None or not connection.is_active:
                raise LeaseLost("connection disconnected")
            if not store.renew(connection_id, holder, lease_seconds):
                raise LeaseLost("run cancelled, restarted or taken over")
            return True

        self._renewal = Renewal(renew, lease_seconds, name=f"backfill {connection_id}")
        self.lost = self._renewal.lost
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._renewal.beat,
            args=(self._stopped,),
            kwargs={"trouble": SQLAlchemyError},
            name=f"backfill-lease-{connection_id}",
            daemon=True,
        )

    @property
    def reason(self) -> str | None:
        """Why the lease was lost (None while it holds)."""
        return self._renewal.reason

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stopped.set()
        self._thread.join()
