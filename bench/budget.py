"""The Intacct budget, QUALITY P7: reconciliation's Intacct calls per idle company per day.

    .venv/bin/python bench/budget.py [--companies 3] [--days 2] [--customers 40] [--invoices 20]

Runs the reconcile scheduler's own decision loop (``Reconciler.sweep_due``) over ``--days`` of
simulated time, one tick every ``ScheduleOptions.tick`` seconds, with the clock injected into the
scheduler, the sweeper and the token cache; every sweep it decides on is executed for real
against the Intacct and FlexPoint simulators (in-process servers on free ports, SQLite in a temp
dir). The companies are idle (nothing changes, no gap is known). The last simulated day is
counted at the Intacct simulator (its per-company call counters, token calls included) for the
old schedule (``RECONCILE_SCHEDULE=fixed``: every resource every 900 s) and the new one (the
defaults). With the event queue on (``INTACCT_EVENT_QUEUE``, the default; ``--event-queue off``
to leave it out) the reconcile process's queue door ticks in the same loop on the same clock and
client, so its ``count`` calls (and any list/ack) are in the figures, by kind. One summary line
per figure on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from bench.common import figure, progress  # noqa: E402

TARGET = 250
CLIENT_SECRET = "bench-intacct-secret"  # noqa: S105 - the simulator's, made up for the run
TOKEN = "bench-flexpoint-token"  # noqa: S105
FERNET_KEY = "x7rJ0mQyB0V9pC4Q2m0l3n8f1kq6YxT5k3sR4bF1dWg="


class SimulatedClock:
    """The run's time: a datetime for the scheduler and sweeper, seconds for the token cache."""

    def __init__(self, start: datetime) -> None:
        self.start = start
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def seconds(self) -> float:
        return (self.now - self.start).total_seconds()


class IdlePublisher:
    """The companies are idle: a sweep that found something to publish means the bench is wrong."""

    def publish(self, routing_key, body, *, message_id, headers=None):
        raise RuntimeError(f"an idle company's sweep published {routing_key}: the run is not idle")


def seed(admin: str, company_id: str, customers: int, invoices: int) -> None:
    requests.post(f"{admin}/companies", json={"companyId": company_id}, timeout=10).raise_for_status()
    objects = f"{admin}/companies/{company_id}/objects"
    for n in range(customers):
        body = {"id": f"C-{n}", "name": f"Customer {n}", "status": "active"}
        requests.post(f"{objects}/accounts-receivable/customer", json=body, timeout=10).raise_for_status()
    for n in range(invoices):
        body = {
            "customer": {"id": f"C-{n % max(customers, 1)}"},
            "state": "posted",
            "currency": {"txnCurrency": "USD"},
            "lines": [{"lineNumber": 1, "txnAmount": "10.00", "glAccount": {"id": "4000"}}],
        }
        requests.post(f"{objects}/accounts-receivable/invoice", json=body, timeout=10).raise_for_status()


def import_history(intacct_client, flexpoint_client, connection) -> None:
    """What the backfill does at connect: FlexPoint starts in step with Intacct (not counted)."""
    from schemas.catalog import OBJECTS
    from workers.backfill.pages import PageImporter

    importer = PageImporter(intacct_client, flexpoint_client)
    for synced in OBJECTS:
        keys = [str(r["key"]) for r in intacct_client.query_all(connection, synced.rest_path, fields=["key"])]
        records, _missing = intacct_client.get_many(connection, synced.rest_path, keys)
        if records:
            importer.import_page(connection, synced.resource, records)


def company_calls(admin: str) -> dict[str, int]:
    calls = requests.get(f"{admin}/stats", timeout=10).json()["calls"]
    return {company: sum(paths.values()) for company, paths in calls.items()}


def simulate(mode: str, args: argparse.Namespace, intacct, flexpoint, workdir: Path) -> tuple[float, Counter]:
    """Run ``args.days`` simulated days on ``mode``; the last day's calls per company, and by purpose."""
    from clients.flexpoint import FlexPointClient
    from clients.intacct.client import IntacctClient
    from clients.intacct.event_queue import EventQueueService
    from clients.intacct.slots import CompanySlots
    from clients.intacct.tokens import TokenProvider
    from clients.intacct.transport import build_session
    from config import Settings
    from ingest.event_queue import EventQueueDoor, EventQueueSchedule, EventQueueSource, QueueFlags
    from ingest.gaps import GapStore
    from ingest.ledger import DeliveryLedger
    from store.crypto import SecretBox
    from store.db import create_engine_for, upgrade
    from workers.connections.store import ConnectionStore
    from workers.reconcile import EventSender, Reconciler, ResourceSweeper
    from workers.reconcile.meter import CallMeter
    from workers.reconcile.schedule import Schedule, ScheduleOptions
    from workers.reconcile.store import WatermarkStore

    settings = Settings(
        flexsync_env="test",
        database_url=f"sqlite:///{workdir}/{mode}.db",
        flexsync_secret_key=(FERNET_KEY,),
        intacct_api_url=intacct.api_url,
        intacct_client_secret=CLIENT_SECRET,
        flexpoint_api_url=flexpoint.url,
        flexpoint_api_token=TOKEN,
        reconcile_schedule=mode,
        intacct_event_queue=args.event_queue,
    )
    engine = create_engine_for(settings.database_url)
    upgrade(engine)
    store = ConnectionStore(engine, SecretBox.for_settings(settings))
    admin = f"{intacct.base_url}/sandbox"
    companies = []
    for n in range(args.companies):
        company_id = f"BUDGET-{mode.upper()}-{n}"
        seed(admin, company_id, args.customers, args.invoices)
        store.save(
            str(uuid.uuid4()), f"acct-{uuid.uuid4().hex[:12]}", company_id, None, "ws_flexpoint", "connected"
        )
        companies.append(company_id)
    clock = SimulatedClock(datetime.now(UTC))
    meter = CallMeter()
    session = build_session()
    intacct_client = IntacctClient(
        settings,
        tokens=TokenProvider(settings, session, clock=clock.seconds, on_call=meter.on_call),
        slots=CompanySlots(engine, cap=settings.intacct_max_concurrency_per_company),
        session=session,
        on_call=meter.on_call,
    )
    flexpoint_client = FlexPointClient(settings.flexpoint_api_url, settings.flexpoint_api_token)
    watermarks = WatermarkStore(engine)
    options = ScheduleOptions.from_settings(settings)
    sweeper = ResourceSweeper(
        intacct=intacct_client,
        flexpoint=flexpoint_client,
        watermarks=watermarks,
        sender=EventSender(IdlePublisher()),
        holder=f"bench-{mode}",
        clock=clock,
        meter=meter,
    )
    reconciler = Reconciler(store, sweeper, schedule=Schedule(options, watermarks, GapStore(engine)))
    queue = None
    if settings.event_queue_on:
        # As processes/reconcile.py wires it: the same client (tokens, cap) and the same clock.
        flags = QueueFlags(engine)
        source = EventQueueSource(
            service=EventQueueService(intacct_client, settings.intacct_event_queue_path),
            ledger=DeliveryLedger(engine),
            publisher=IdlePublisher(),
            flags=flags,
            now=clock,
        )
        interval = timedelta(seconds=settings.reconcile_interval_seconds)
        queue = EventQueueDoor(source, EventQueueSchedule(interval, GapStore(engine)), flags)
    for connection in store.list("connected"):
        import_history(intacct_client, flexpoint_client, connection)
    last_day = clock.start + timedelta(days=args.days - 1)
    end = clock.start + timedelta(days=args.days)
    tick = timedelta(seconds=options.tick)
    before: dict[str, int] = {}
    purposes_before: Counter = Counter()
    started = time.monotonic()
    while clock.now < end:
        if not before and clock.now >= last_day:
            before = company_calls(admin)
            purposes_before = Counter(meter.totals)
        if queue is not None:
            drains = queue.tick(store.list("connected"), clock.now)
            broken = [d for d in drains if d.outcome not in ("empty", "drained")]
            if broken:
                raise RuntimeError(f"an event queue drain failed: {broken[0].outcome} {broken[0].error}")
        failed = [r for r in reconciler.sweep_due(clock.now) if r.kind == "failed"]
        if failed:
            raise RuntimeError(f"a sweep failed: {failed[0].error}")
        clock.now += tick
    after = company_calls(admin)
    daily = [after.get(c, 0) - before.get(c, 0) for c in companies]
    purposes: Counter = Counter()
    for (company, purpose), count in meter.totals.items():
        if company in companies:
            purposes[purpose] += count - purposes_before[(company, purpose)]
    progress(f"{mode}: {args.days} simulated days in {time.monotonic() - started:.1f} s; per company {daily}")
    intacct_client.close()
    flexpoint_client.close()
    engine.dispose()
    return sum(daily) / len(daily), Counter({k: v / len(companies) for k, v in purposes.items()})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=3)
    parser.add_argument("--days", type=int, default=2, help="simulated days; the last one is counted")
    parser.add_argument("--customers", type=int, default=40)
    parser.add_argument("--invoices", type=int, default=20)
    parser.add_argument(
        "--event-queue", choices=("on", "off"), default="on", help="INTACCT_EVENT_QUEUE (default on)"
    )
    args = parser.parse_args()
    if args.days < 2:
        parser.error("--days must be at least 2: the first day is the key-set pass's warm-up")

    from config import Settings
    from observability.logging import configure_logging
    from sandbox.flexpoint.config import FlexPointConfig
    from sandbox.flexpoint.server import FlexPointServer
    from sandbox.intacct.config import SimulatorConfig
    from sandbox.intacct.server import SimulatorServer

    # Thousands of sweep lines otherwise: warnings only, on stderr.
    configure_logging(
        Settings(flexsync_env="test", log_level="WARNING", log_format="console"), stream=sys.stderr
    )
    with tempfile.TemporaryDirectory(prefix="flexsync-budget-") as tmp:
        workdir = Path(tmp)
        intacct_config = SimulatorConfig(port=0, data_dir=workdir / "intacct", client_secret=CLIENT_SECRET)
        flexpoint_config = FlexPointConfig(port=0, data_dir=workdir / "flexpoint", token=TOKEN)
        with SimulatorServer(intacct_config) as intacct, FlexPointServer(flexpoint_config) as flexpoint:
            results = {
                mode: simulate(mode, args, intacct, flexpoint, workdir) for mode in ("fixed", "budget")
            }
    for mode, label in (
        ("fixed", "before (fixed: every resource every 900 s)"),
        ("budget", "after (budget defaults)"),
    ):
        calls, purposes = results[mode]
        kinds = ("sweep", "keyset", "token", "queue-count", "queue-list", "queue-ack")
        parts = ", ".join(f"{name} {purposes[name]:.1f}" for name in kinds)
        queue = f", event queue {args.event_queue}"
        figure(f"P7 {label}{queue}: {calls:.1f} Intacct calls per idle company per day ({parts})")
    after = results["budget"][0]
    verdict = "MET" if after <= TARGET else "NOT MET"
    figure(
        f"P7 target: <= {TARGET} per idle company per day: {verdict} ({after:.1f}, {after / TARGET:.0%} of it)"
    )
    return 0 if after <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
