"""Backfill progress per resource, and its reports to FlexPoint (``backfill`` of the status).

Reports are throttled: at most one every ``interval`` seconds while pages land, plus one at
the end, so a fast import does not turn into a stream of status writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from observability.logging import get_logger
from workers.backfill.store import Checkpoint
from workers.connections.store import ConnectionRecord

log = get_logger(__name__)

# The ConnectionStatus fields a backfill report carries over from the status FlexPoint holds,
# so that "last report wins" does not erase what provisioning told the customer.
_KEPT = ("webhookUrl", "companyId", "entityId")


def backfill_field(resources: Iterable[str], points: Mapping[str, Checkpoint]) -> dict[str, dict[str, Any]]:
    """ConnectionStatus.backfill: ``{resource: {done, total, finished}}`` for every resource."""
    field: dict[str, dict[str, Any]] = {}
    for resource in resources:
        point = points.get(resource) or Checkpoint(resource)
        field[resource] = {"done": point.imported, "total": point.total, "finished": point.done}
    return field


class StatusReporter:
    """Sends the connection's status with the backfill's progress, at most every ``interval`` s."""

    def __init__(
        self,
        flexpoint: Any,
        connection: ConnectionRecord,
        resources: Iterable[str],
        *,
        webhook_url: str | None = None,
        interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        live: Callable[[], bool] = lambda: True,
    ) -> None:
        self._flexpoint = flexpoint
        self._live = live
        self._connection = connection
        self._resources = tuple(resources)
        self._interval = interval
        self._clock = clock
        self._last: float | None = None
        self._base: dict[str, Any] = {
            "connectionId": connection.connection_id,
            "state": "connected",
            "companyId": connection.company_id,
            "entityId": connection.entity_id,
        }
        if webhook_url:
            self._base["webhookUrl"] = webhook_url
        self._fetched = False

    def update(
        self, points: Mapping[str, Checkpoint], *, final: bool = False, message: str | None = None
    ) -> None:
        """Report now if ``final`` or ``interval`` has passed since the last report."""
        now = self._clock()
        if not final and self._last is not None and now - self._last < self._interval:
            return
        self._last = now
        if not self._live():
            # Disconnected meanwhile: a late "connected" would overwrite the customer's
            # "disconnected" in FlexPoint, since the last report wins.
            log.info("backfill_progress_withheld", connection_id=self._connection.connection_id)
            return
        status = {**self._current_base(), "backfill": backfill_field(self._resources, points)}
        if message:
            status["message"] = message
        try:
            self._flexpoint.report_status(self._connection.account_id, status)
        except Exception as exc:
            # Progress is for the customer's eyes; the import itself goes on.
            log.warning(
                "backfill_progress_not_reported",
                connection_id=self._connection.connection_id,
                error=str(exc)[:300],
            )

    def _current_base(self) -> dict[str, Any]:
        if not self._fetched:
            self._fetched = True
            try:
                current = self._flexpoint.get_status(self._connection.account_id) or {}
            except Exception as exc:
                log.warning(
                    "backfill_status_not_read",
                    connection_id=self._connection.connection_id,
                    error=str(exc)[:300],
                )
                current = {}
            if current.get("connectionId") == self._connection.connection_id:
                self._base.update({k: current[k] for k in _KEPT if current.get(k) is not None})
        return self._base
