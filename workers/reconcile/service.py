"""The ``reconcile`` process: a sweep of every connected company every interval, until SIGTERM.

Each sweep walks the connected connections and, for each, every synced resource (see
:mod:`.sweep`). Several processes may run side by side: each (connection, resource) is swept
by whichever process claims its lease first, the others skip it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from broker.publisher import ConfirmingPublisher
from broker.topology import EVENTS_EXCHANGE
from clients.flexpoint import FlexPointClient
from clients.intacct.client import create_client
from config import Settings
from observability.logging import get_logger
from reliability.leases import new_holder
from schemas.catalog import BY_RESOURCE, OBJECTS, SyncedObject
from store.connections import ConnectionRecord, ConnectionStore
from store.crypto import SecretBox
from store.db import create_engine_for, upgrade
from store.slots import company_slots
from store.watermarks import WatermarkStore
from workers.reconcile.events import EventSender
from workers.reconcile.sweep import ResourceSweep, ResourceSweeper, SweepOptions
from workers.runtime.process import require_settings, run_worker

log = get_logger(__name__)

_PUBLISHER_WAIT = 10.0


class ReconcileError(ValueError):
    """A sweep cannot start as asked (an unknown connection or resource); the message says why."""


@dataclass
class Reconciler:
    """Sweeps connections; ``should_stop`` is checked between resources."""

    connections: ConnectionStore
    sweeper: ResourceSweeper
    should_stop: Callable[[], bool] = lambda: False

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


@contextmanager
def open_reconciler(
    settings: Settings,
    *,
    options: SweepOptions | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[Reconciler]:
    """A reconciler wired to the real store, clients and broker; closes them all on exit."""
    require_settings(settings, "reconcile")
    engine = create_engine_for(settings.database_url)
    upgrade(engine)
    intacct = create_client(settings, company_slots(settings, engine))
    flexpoint = FlexPointClient.from_settings(settings, process="reconcile")
    publisher = ConfirmingPublisher(settings.amqp_url, EVENTS_EXCHANGE.name)
    publisher.start(wait=_PUBLISHER_WAIT)
    try:
        sweeper = ResourceSweeper(
            intacct=intacct,
            flexpoint=flexpoint,
            watermarks=WatermarkStore(engine),
            sender=EventSender(publisher),
            holder=holder_name(),
            options=options,
            should_stop=should_stop,
        )
        yield Reconciler(ConnectionStore(engine, SecretBox.for_settings(settings)), sweeper, should_stop)
    finally:
        publisher.close()
        flexpoint.close()
        intacct.close()
        engine.dispose()


class SweepLoop:
    """A sweep every ``interval`` seconds until ``stop()``; a sweep under way stops at the next record."""

    def __init__(
        self, settings: Settings, *, options: SweepOptions | None = None, keyset: bool = False
    ) -> None:
        self._settings = settings
        self._options = options
        self._keyset = keyset
        self._stop = threading.Event()

    def run(self) -> None:
        interval = self._settings.reconcile_interval_seconds
        with open_reconciler(
            self._settings, options=self._options, should_stop=self._stop.is_set
        ) as reconciler:
            while not self._stop.is_set():
                self._sweep(reconciler)
                self._stop.wait(interval)

    def _sweep(self, reconciler: Reconciler) -> None:
        try:
            results = reconciler.sweep(keyset=self._keyset)
        except Exception as exc:
            # The store itself failed (each resource's own failures are in its results): the
            # watermarks stay, and the next interval tries again rather than the process dying.
            log.error("reconcile_sweep_failed", error_type=type(exc).__name__, error=str(exc)[:300])
        else:
            log.info(
                "reconcile_sweep_done",
                resources=len(results),
                published=sum(r.published for r in results),
                failed=sum(1 for r in results if r.kind == "failed"),
            )

    def stop(self) -> None:
        self._stop.set()  # an Event: safe to set from a signal handler

    def close(self) -> None:
        """Nothing to close: ``run`` closes what it opened."""


def run(settings: Settings, *, options: SweepOptions | None = None, keyset: bool = False) -> None:
    """Sweep every ``RECONCILE_INTERVAL_SECONDS`` until SIGTERM/SIGINT; a sweep under way stops
    at the next record, releases its lease and leaves its watermark where it was."""
    require_settings(settings, "reconcile")
    loop = SweepLoop(settings, options=options, keyset=keyset)
    run_worker("reconcile", loop, interval_seconds=settings.reconcile_interval_seconds)
