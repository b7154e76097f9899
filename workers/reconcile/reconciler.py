"""The reconciler: sweeps every connection's resources, or those the schedule finds due."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from observability.logging import get_logger
from observability.metrics import ReconcileMetrics
from reliability.errors import FlexsyncError
from reliability.leases import new_holder
from schemas.catalog import BY_RESOURCE, OBJECTS, SyncedObject
from workers.connections.store import ConnectionRecord, ConnectionStore
from workers.reconcile.schedule import Schedule
from workers.reconcile.sweep import ResourceSweep, ResourceSweeper

log = get_logger(__name__)


class ReconcileError(FlexsyncError, ValueError):
    """A sweep cannot start as asked (an unknown connection or resource); the message says why."""


@dataclass
class Reconciler:
    """Sweeps connections (all, or what ``schedule`` says is due); ``should_stop`` is checked between resources."""

    connections: ConnectionStore
    sweeper: ResourceSweeper
    should_stop: Callable[[], bool] = lambda: False
    schedule: Schedule | None = None
    metrics: ReconcileMetrics | None = None

    def sweep_due(self, now: datetime) -> list[ResourceSweep]:
        """One tick: sweep every (connection, resource) the schedule finds due at ``now``."""
        if self.schedule is None:
            raise ReconcileError("this reconciler has no schedule; sweep() sweeps everything")
        results: list[ResourceSweep] = []
        for due in self.schedule.due(self.connections.list("connected"), now):
            if self.should_stop():
                break
            result = self.sweeper.sweep(due.connection, due.synced, keyset=due.reason == "keyset")
            self.schedule.settle(result.connection_id, result.resource, result.kind, now)
            if self.metrics is not None:
                self.metrics.sweeps.labels(due.reason, result.kind).inc()
            results.append(result)
        return results

    def sweep(
        self,
        *,
        keyset: bool = False,
        connection_id: str | None = None,
        resources: Sequence[str] | None = None,
    ) -> list[ResourceSweep]:
        """One sweep of every connected connection (or just ``connection_id``); one result per resource."""
        objects = self._objects(resources)
        results: list[ResourceSweep] = []
        for connection in self._targets(connection_id):
            for synced in objects:
                if self.should_stop():
                    return results
                results.append(self.sweeper.sweep(connection, synced, keyset=keyset))
        return results

    def _targets(self, connection_id: str | None) -> list[ConnectionRecord]:
        if connection_id is None:
            return self.connections.list("connected")
        connection = self.connections.get(connection_id)
        if connection is None:
            raise ReconcileError(f"no connection {connection_id!r}; see `flexsync connections list`")
        if connection.state != "connected":
            raise ReconcileError(
                f"connection {connection_id} is {connection.state}; only connected ones are reconciled"
            )
        return [connection]

    @staticmethod
    def _objects(resources: Sequence[str] | None) -> list[SyncedObject]:
        if not resources:
            return list(OBJECTS)
        unknown = [name for name in resources if name not in BY_RESOURCE]
        if unknown:
            raise ReconcileError(
                f"unknown resource(s) {', '.join(unknown)}; expected some of {', '.join(BY_RESOURCE)}"
            )
        return [BY_RESOURCE[name] for name in resources]


def holder_name() -> str:
    """Who holds a lease: the one holder format of ``reliability.leases`` (a dead one is taken over)."""
    return new_holder()
