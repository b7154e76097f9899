"""The historical import (backfill): every resource of a connection, page by page, resumable.

The provisioning worker calls :func:`request_backfill` after a successful connect and
:func:`cancel_backfill` on disconnect; a :class:`BackfillWorker` in its process runs the
scheduled imports; ``flexsync backfill`` runs one in the foreground.
"""

from __future__ import annotations

from sqlalchemy import Engine

from workers.backfill.runner import BackfillRunner, RunOptions
from workers.backfill.store import BackfillStore
from workers.backfill.worker import BackfillWorker


def request_backfill(
    engine: Engine, connection_id: str, *, restart: bool = False, if_unfinished: bool = False
) -> None:
    """Schedule the connection's import; a pending or running one is kept (``restart``: from scratch;
    ``if_unfinished``: a completed one is kept too)."""
    BackfillStore(engine).request(connection_id, restart=restart, if_unfinished=if_unfinished)


def cancel_backfill(engine: Engine, connection_id: str) -> bool:
    """Cancel the connection's import, if one is pending or running (False if none); it stops at
    its next page."""
    return BackfillStore(engine).cancel(connection_id)


__all__ = ["BackfillRunner", "BackfillWorker", "RunOptions", "cancel_backfill", "request_backfill"]
