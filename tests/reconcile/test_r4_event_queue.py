"""QUALITY R4 with Intacct's event queue: webhooks lost because the receiver was down long enough
that Intacct gave up, while records were added, changed and deleted.

Through the real simulators, RabbitMQ and sync workers. From Intacct's side the receiver is down
(its trigger points at a port nobody listens on) until every delivery failed its four attempts and
went into the company's event queue. With the queue on, FlexPoint equals Intacct within one
interval, from the queue alone (no sweep, no key-set pass); with the queue answering 404, the
company is flagged and the sweep brings adds and changes, the key-set pass deletions. A crash
between publish and ack loses nothing: the batch comes back and its events are duplicates.
The schedule's clock is injected; nothing sleeps, every wait has a deadline.
"""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime, timedelta

import pytest
import requests

from clients.intacct.event_queue import EventQueueService
from ingest.event_queue import EventQueueDoor, EventQueueSchedule, EventQueueSource, QueueFlags
from ingest.gaps import RECEIVER_DOWN
from ingest.ledger import DeliveryLedger
from processes.reconcile import SweepLoop, open_sources
from processes.status import connection_status
from schemas.catalog import BY_RESOURCE
from tests.conftest import COMPANY, wait_until
from tests.reconcile.conftest import differences, queues_empty
from tests.reconcile.test_r4_sweep import invoice, next_second, published
from workers.reconcile.schedule import ScheduleOptions

pytestmark = pytest.mark.broker

CUSTOMERS = BY_RESOURCE["customers"].rest_path
INVOICES = BY_RESOURCE["invoices"].rest_path
ACCOUNTS = BY_RESOURCE["gl-accounts"].rest_path


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Crash(BaseException):
    """The process dies here (not an error anything handles)."""


class CrashingLedger(DeliveryLedger):
    crash = False

    def record_many(self, deliveries) -> None:
        if self.crash:
            raise Crash("killed after the confirms, before the ledger and the ack")
        super().record_many(deliveries)


class CrashingService(EventQueueService):
    crash = False

    def ack(self, connection, ack_id: str) -> None:
        if self.crash:
            raise Crash("killed after the confirms and the ledger, before the ack")
        super().ack(connection, ack_id)


def queue_door(parts, *, ledger=None, service=None) -> EventQueueDoor:
    flags = QueueFlags(parts.engine)
    source = EventQueueSource(
        service=service or EventQueueService(parts.intacct, parts.settings.intacct_event_queue_path),
        ledger=ledger or DeliveryLedger(parts.engine),
        publisher=parts.publisher,
        flags=flags,
    )
    interval = timedelta(seconds=parts.settings.reconcile_interval_seconds)
    return EventQueueDoor(source, EventQueueSchedule(interval, parts.gaps), flags)


def queued(intacct) -> dict:
    answer = requests.get(f"{intacct.base_url}/sandbox/companies/{COMPANY}/event-queue", timeout=10)
    answer.raise_for_status()
    return answer.json()


def lose_webhooks_while_records_change(
    company, intacct, live_receiver, parts, broker, topology, worker
) -> tuple[dict, datetime]:
    """The receiver is down for Intacct until it gives up; records added, changed and deleted.

    Returns the keys, how many deliveries were queued, and when the receiver came back (recorded as the gap the first receiver
    back records)."""
    connection = live_receiver.connection
    kept = company.create(CUSTOMERS, {"id": "C-1", "name": "Kept Ltd", "status": "active"})
    doomed = company.create(CUSTOMERS, {"id": "C-2", "name": "Doomed Ltd", "status": "active"})
    paid = company.create(INVOICES, invoice("C-1", "100.00"))
    voided = company.create(INVOICES, invoice("C-1", "50.00"))
    wait_until(
        lambda: not differences(parts, connection), timeout=30, message="the webhooks' state in FlexPoint"
    )
    # The sync workers' second look at records read in their modification second is done, so
    # the changes below can only come through the queue.
    wait_until(lambda: queues_empty(broker, topology, worker), timeout=30, message="the rechecks done")
    next_second(parts, connection)
    hook = f"{live_receiver.base_url}/webhooks/intacct/{connection.connection_id}"
    down_since = datetime.now(UTC)
    company_hooks = f"{company.admin}/companies/{COMPANY}/webhooks"
    requests.patch(company_hooks, json={"url": f"http://127.0.0.1:{closed_port()}/down"}, timeout=10)
    added = company.create(CUSTOMERS, {"id": "C-3", "name": "Added Ltd", "status": "active"})
    company.update(CUSTOMERS, kept, {"name": "Kept And Renamed Ltd"})
    company.delete(CUSTOMERS, doomed)
    company.create(INVOICES, invoice("C-3", "70.00"))
    company.update(INVOICES, paid, {"description": "changed while the receiver was down"})
    company.delete(INVOICES, voided)
    company.create(ACCOUNTS, {"id": "4999", "name": "Suspense", "accountType": "balanceSheet"})
    # Intacct's four attempts (time-scaled) all fail: every delivery is dropped into the queue.
    assert intacct.simulator.webhooks.wait_idle(60), "Intacct did not give up in time"
    lost_events = len(queued(intacct)["events"])
    assert lost_events >= 7, "a delivery per change, each failed and queued"
    lost = differences(parts, connection)
    assert len(lost) == 7, lost
    requests.patch(company_hooks, json={"url": hook}, timeout=10)
    back = datetime.now(UTC)
    parts.gaps.record(RECEIVER_DOWN, None, down_since, back)
    return {"added": added, "kept": kept, "doomed": doomed, "voided": voided, "events": lost_events}, back


def test_lost_adds_changes_and_deletes_come_from_the_queue_within_one_interval(
    company, worker, parts, live_receiver, intacct, broker, declared_topology
):
    connection = live_receiver.connection
    door = queue_door(parts)
    started = datetime.now(UTC)
    [first] = door.tick([connection], started)  # the process counts every company at start
    assert first.outcome == "empty"

    keys, back = lose_webhooks_while_records_change(
        company, intacct, live_receiver, parts, broker, declared_topology, worker
    )
    interval = door.schedule.interval
    tick = ScheduleOptions(interval=interval).tick
    now, drains = max(back, started), []
    while not drains and now - started <= interval:
        drains = [d for d in door.tick([connection], now) if d.outcome != "empty"]
        now += timedelta(seconds=tick)
    assert drains, "the queue was drained within one interval"
    [drain] = drains
    assert (drain.outcome, drain.published, drain.duplicates, drain.skipped) == (
        "drained",
        keys["events"],
        0,
        0,
    )
    assert queued(intacct)["events"] == [], "acknowledged"
    # Adds, changes and deletes, with no sweep and no key-set pass (none was built).
    wait_until(lambda: not differences(parts, connection), timeout=30, message="FlexPoint equals Intacct")
    for resource, key in (("customers", keys["doomed"]), ("invoices", keys["voided"])):
        assert parts.flexpoint.get_record(connection.account_id, resource, key)["deleted"] is True
    assert parts.flexpoint.get_record(connection.account_id, "customers", keys["added"])["data"]["name"] == (
        "Added Ltd"
    )
    # Idle again: one count per interval, nothing listed.
    assert door.tick([connection], now) == []
    [idle] = door.tick([connection], now + interval)
    assert (idle.outcome, idle.count) == ("empty", 0)


def test_with_the_queue_answering_404_the_sweep_brings_changes_and_the_key_set_pass_deletions(
    company, worker, parts, live_receiver, intacct, broker, declared_topology
):
    connection = live_receiver.connection
    requests.patch(
        f"{company.admin}/companies/{COMPANY}/event-queue", json={"available": False}, timeout=10
    ).raise_for_status()
    door = queue_door(parts)
    keys, back = lose_webhooks_while_records_change(
        company, intacct, live_receiver, parts, broker, declared_topology, worker
    )
    [drain] = door.tick([connection], back)
    assert drain.outcome == "missing"
    [row] = [r for r in connection_status(parts.engine) if r.connection_id == connection.connection_id]
    assert row.event_queue.startswith("unavailable (404"), row
    assert door.tick([connection], back + timedelta(days=1)) == [], "left alone until the next connect"

    options = ScheduleOptions()
    reconciler = parts.reconciler(schedule=options)
    now, sweep = back, []
    while not sweep and now - back <= options.interval:
        now += timedelta(seconds=options.tick)
        parts.gaps.beat("test-receiver", now)  # the receivers stay up in the injected time
        sweep = reconciler.sweep_due(now)
    assert sweep and now - back <= options.interval, "the gap is swept within one interval"
    assert {r.kind for r in sweep} == {"modified-since"}
    gone = sorted(
        [
            f"customers {keys['doomed']}: gone from Intacct, live in FlexPoint",
            f"invoices {keys['voided']}: gone from Intacct, live in FlexPoint",
        ]
    )
    wait_until(lambda: differences(parts, connection) == gone, timeout=30, message="adds and changes")
    keyset = reconciler.sweep_due(connection.created_at + options.keyset_interval)
    assert published(keyset) == {"customers": (0, 1), "invoices": (0, 1)}
    wait_until(lambda: not differences(parts, connection), timeout=30, message="deletions as tombstones")


@pytest.mark.parametrize("where", ["before the ledger", "before the ack"])
def test_a_crash_between_publish_and_ack_loses_nothing(
    company, worker, parts, live_receiver, intacct, broker, declared_topology, where
):
    connection = live_receiver.connection
    keys, back = lose_webhooks_while_records_change(
        company, intacct, live_receiver, parts, broker, declared_topology, worker
    )
    ledger = CrashingLedger(parts.engine)
    service = CrashingService(parts.intacct, parts.settings.intacct_event_queue_path)
    if where == "before the ledger":
        ledger.crash = True
    else:
        service.crash = True
    with pytest.raises(Crash):
        queue_door(parts, ledger=ledger, service=service).tick([connection], back)
    assert len(queued(intacct)["events"]) == keys["events"], "not acknowledged: the batch is still queued"

    # The process restarts: the batch comes back; its events are duplicates, never losses.
    [drain] = queue_door(parts).tick([connection], back)
    lost = keys["events"]
    assert drain.outcome == "drained"
    assert (drain.published, drain.duplicates) == ((lost, 0) if where == "before the ledger" else (0, lost))
    assert queued(intacct)["events"] == []
    wait_until(lambda: not differences(parts, connection), timeout=30, message="FlexPoint equals Intacct")
    assert parts.flexpoint.get_record(connection.account_id, "customers", keys["doomed"])["deleted"] is True


def test_the_reconcile_process_drains_the_queue_and_off_leaves_it_alone(
    company, worker, parts, live_receiver, intacct, broker, declared_topology, sandbox_settings
):
    connection = live_receiver.connection
    keys, _ = lose_webhooks_while_records_change(
        company, intacct, live_receiver, parts, broker, declared_topology, worker
    )
    with open_sources(sandbox_settings.with_overrides(intacct_event_queue="off")) as (_, queue):
        assert queue is None
    assert len(queued(intacct)["events"]) == keys["events"]

    # The process as the Procfile runs it: its first tick counts every company, then drains.
    loop = SweepLoop(sandbox_settings)
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: queued(intacct)["events"] == [], timeout=30, message="the queue drained")
        wait_until(lambda: not differences(parts, connection), timeout=30, message="FlexPoint equals Intacct")
    finally:
        loop.stop()
        thread.join(30)
    assert not thread.is_alive()
