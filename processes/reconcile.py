"""The ``reconcile`` process: every tick, sweep what the schedule says is due, until SIGTERM.

What is due, and why it is cheap, is :mod:`.schedule`; one resource's sweep is :mod:`.sweep`.
Several processes may run side by side: each (connection, resource) is swept by whichever
process claims its lease first, the others skip it. ``/metrics`` on ``$PORT`` counts the
Intacct calls per company and purpose.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from broker.topology import EVENTS_EXCHANGE
from clients.intacct.event_queue import EventQueueService
from config import Settings
from ingest.event_queue import Drain, EventQueueDoor, EventQueueSchedule, EventQueueSource, QueueFlags
from ingest.gaps import GapStore
from ingest.ledger import DeliveryLedger
from observability.logging import get_logger
from observability.metrics import ReconcileMetrics, company_tagger
from processes.parts import ProcessParts, wait_for_database
from workers.reconcile.events import EventSender
from workers.reconcile.meter import CallMeter
from workers.reconcile.reconciler import Reconciler, holder_name
from workers.reconcile.schedule import Schedule, ScheduleOptions
from workers.reconcile.store import WatermarkStore
from workers.reconcile.sweep import ResourceSweeper, SweepOptions
from workers.runtime.process import require_settings, run_worker

log = get_logger(__name__)

_PUBLISHER_WAIT = 10.0


@contextmanager
def open_reconciler(
    settings: Settings,
    *,
    options: SweepOptions | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    metrics: ReconcileMetrics | None = None,
) -> Iterator[Reconciler]:
    """A reconciler wired to the real store, clients and broker; closes them all on exit."""
    with open_sources(settings, options=options, should_stop=should_stop, metrics=metrics) as (reconciler, _):
        yield reconciler


@contextmanager
def open_sources(
    settings: Settings,
    *,
    options: SweepOptions | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    metrics: ReconcileMetrics | None = None,
) -> Iterator[tuple[Reconciler, EventQueueDoor | None]]:
    """The process's two sources of the door: the reconciler and, unless INTACCT_EVENT_QUEUE=off,
    Intacct's event queue; on the same client (one token cache, one company cap) and publisher."""
    require_settings(settings, "reconcile")
    options = options or SweepOptions()
    with ProcessParts(settings, process="reconcile") as parts:
        meter = CallMeter(metrics)
        # One client for the process's life: its token cache spares a token call per sweep.
        intacct = parts.intacct(on_call=meter.on_call)
        flexpoint = parts.flexpoint()
        publisher = parts.publisher(EVENTS_EXCHANGE.name, wait=_PUBLISHER_WAIT)
        watermarks = WatermarkStore(parts.engine)
        sweeper = ResourceSweeper(
            intacct=intacct,
            flexpoint=flexpoint,
            watermarks=watermarks,
            sender=EventSender(publisher),
            holder=holder_name(),
            options=options,
            should_stop=should_stop,
            meter=meter,
        )
        schedule = Schedule(
            ScheduleOptions.from_settings(settings, keyset_interval=options.keyset_interval),
            watermarks,
            GapStore(parts.engine),
        )
        queue = None
        if settings.event_queue_on:
            flags = QueueFlags(parts.engine)
            source = EventQueueSource(
                service=EventQueueService(intacct, settings.intacct_event_queue_path),
                ledger=DeliveryLedger(parts.engine),
                publisher=publisher,
                flags=flags,
            )
            queue_schedule = EventQueueSchedule(
                timedelta(seconds=settings.reconcile_interval_seconds), GapStore(parts.engine)
            )
            queue = EventQueueDoor(source, queue_schedule, flags)
        yield Reconciler(parts.connections, sweeper, should_stop, schedule, metrics), queue


# The outcomes of a drain that left events in Intacct's queue for the next one.
DRAIN_FAILED = frozenset({"failed", "unconfirmed"})


def drain_event_queues(
    reconciler: Reconciler, queue: EventQueueDoor, connection_id: str | None = None
) -> list[Drain]:
    """Every connected company's event queue (or only ``connection_id``'s) drained now, whatever
    its schedule says (``flexsync reconcile --once``)."""
    connections = reconciler.connections.list("connected")
    return [queue.source.drain(c) for c in connections if connection_id in (None, c.connection_id)]


class SweepLoop:
    """Every tick, the sweeps the schedule says are due, until ``stop()`` (``keyset``: first a key-set
    pass of everything); a sweep under way stops at the next record."""

    def __init__(
        self,
        settings: Settings,
        *,
        options: SweepOptions | None = None,
        keyset: bool = False,
        metrics: ReconcileMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._options = options
        self._keyset = keyset
        self._metrics = metrics
        self._stop = threading.Event()

    def run(self) -> None:
        with open_sources(
            self._settings, options=self._options, should_stop=self._stop.is_set, metrics=self._metrics
        ) as (reconciler, queue):
            assert reconciler.schedule is not None
            tick = reconciler.schedule.options.tick
            if self._keyset:
                reconciler.sweep(keyset=True)
            while not self._stop.is_set():
                # The queue first: what Intacct kept of lost webhooks is the cheaper way in.
                if queue is not None:
                    self._drain_queues(reconciler, queue)
                self._sweep_due(reconciler)
                self._stop.wait(tick)

    def _drain_queues(self, reconciler: Reconciler, queue: EventQueueDoor) -> None:
        try:
            drains = queue.tick(reconciler.connections.list("connected"), datetime.now(UTC))
        except Exception as exc:
            # Our own store failed: nothing was acknowledged that was not confirmed; next tick.
            log.error("event_queue_tick_failed", error_type=type(exc).__name__, error=str(exc)[:300])
            return
        busy = [d for d in drains if d.outcome not in ("empty", "missing")]
        if busy:
            log.info(
                "event_queue_drained",
                companies=len(busy),
                published=sum(d.published for d in busy),
                duplicates=sum(d.duplicates for d in busy),
                failed=sum(1 for d in busy if d.outcome in DRAIN_FAILED),
            )

    def _sweep_due(self, reconciler: Reconciler) -> None:
        try:
            results = reconciler.sweep_due(datetime.now(UTC))
        except Exception as exc:
            # The store itself failed (each resource's own failures are in its results): the
            # watermarks stay, and the next tick tries again rather than the process dying.
            log.error("reconcile_sweep_failed", error_type=type(exc).__name__, error=str(exc)[:300])
            return
        if results:
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
    """Sweep what is due every tick until SIGTERM/SIGINT (``keyset``: first a key-set pass of all);
    a sweep under way stops at the next record, releases its lease and leaves its watermark."""
    require_settings(settings, "reconcile")
    if not wait_for_database(settings, "reconcile"):
        return
    metrics = ReconcileMetrics(company_label=company_tagger(settings.flexsync_secret_key))
    loop = SweepLoop(settings, options=options, keyset=keyset, metrics=metrics)
    run_worker(
        "reconcile",
        loop,
        registry=metrics.registry,
        port=settings.port,
        bind=settings.flexsync_metrics_bind,
        token=settings.flexsync_metrics_token,
        interval_seconds=settings.reconcile_interval_seconds,
        schedule=settings.reconcile_schedule,
        quiet_interval_seconds=settings.reconcile_quiet_interval_seconds,
    )
