"""Keeping a claimed backfill: the lease renewed in the background while the import runs.

The heartbeat also watches the connection: once it is disconnected (or the run cancelled,
restarted or taken over) ``lost`` is set and the import stops at its next page. The heartbeat,
holder ids and the dead-holder check are the one lease policy's (``reliability.leases``).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from reliability.errors import LeaseLost
from reliability.leases import Renewal, holder_is_dead, new_holder
from workers.backfill.store import BackfillStore

__all__ = ["heartbeat", "holder_is_dead", "new_holder"]


def heartbeat(
    store: BackfillStore,
    connections: Any,
    connection_id: str,
    holder: str,
    lease_seconds: float,
) -> AbstractContextManager[Renewal]:
    """Renews ``holder``'s lease every third of ``lease_seconds`` on a thread until the block ends
    or the lease is lost (``lost``, ``reason``); a database hiccup is retried at the next beat."""

    def renew() -> bool:
        connection = connections.get(connection_id)
        if connection is None or not connection.is_active:
            raise LeaseLost("connection disconnected")
        if not store.renew(connection_id, holder, lease_seconds):
            raise LeaseLost("run cancelled, restarted or taken over")
        return True

    renewal = Renewal(renew, lease_seconds, name=f"backfill {connection_id}")
    return renewal.in_background(trouble=SQLAlchemyError, thread_name=f"backfill-lease-{connection_id}")
