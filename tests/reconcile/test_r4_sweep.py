"""QUALITY R4: webhooks lost while Intacct changes; one sweep brings FlexPoint to Intacct's state.

Through the real simulators, RabbitMQ and sync workers: the starting state arrives by webhook,
then the company's triggers are switched off while records are added, changed and deleted. The
budget schedule decides when the sweeps run (its clock injected, never slept through): within
one interval of a known gap, within the quiet interval when nobody knew of the loss.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests

from ingest.gaps import RECEIVER_5XX, GapReporter
from schemas.catalog import BY_RESOURCE, OBJECTS
from tests.conftest import wait_until
from tests.reconcile.conftest import differences, queues_empty
from workers.reconcile.compare import instant
from workers.reconcile.schedule import ScheduleOptions

pytestmark = pytest.mark.broker

CUSTOMERS = BY_RESOURCE["customers"].rest_path
INVOICES = BY_RESOURCE["invoices"].rest_path
ACCOUNTS = BY_RESOURCE["gl-accounts"].rest_path


def invoice(customer_id: str, amount: str, state: str = "posted") -> dict:
    return {
        "customer": {"id": customer_id},
        "state": state,
        "currency": {"txnCurrency": "USD"},
        "lines": [{"lineNumber": 1, "txnAmount": amount, "glAccount": {"id": "4000"}}],
    }


def next_second(parts, connection) -> None:
    """Wait until the clock has left the second of every version FlexPoint holds."""
    latest = max(
        instant(item["sourceVersion"])
        for resource in ("customers", "invoices")
        for item in parts.flexpoint.iter_records(connection.account_id, resource)
    )
    wait_until(lambda: datetime.now(UTC) >= latest + timedelta(seconds=1), message="the next second")


def published(results, kind: str | None = None) -> dict[str, tuple[int, int]]:
    return {
        r.resource: (r.updates, r.deletes)
        for r in results
        if r.published and (kind is None or r.kind == kind)
    }


def flexpoint_list_reads(flexpoint, account_id: str) -> int:
    """How many list reads (``GET .../accounting/<resource>``) FlexPoint has answered for the account."""
    log = requests.get(
        f"{flexpoint.url}/sandbox/requests",
        headers={"Authorization": f"Bearer {flexpoint.config.token}"},
        params={"limit": 100_000, "accountId": account_id},
        timeout=10,
    ).json()["requests"]
    return sum(1 for r in log if r["method"] == "GET" and r["path"].rsplit("/", 2)[-2] == "accounting")


def test_one_sweep_brings_adds_and_changes_and_the_key_set_pass_brings_deletions(
    company, worker, parts, live_receiver, flexpoint, broker, declared_topology
):
    connection = live_receiver.connection
    kept = company.create(CUSTOMERS, {"id": "C-1", "name": "Kept Ltd", "status": "active"})
    doomed = company.create(CUSTOMERS, {"id": "C-2", "name": "Doomed Ltd", "status": "active"})
    paid = company.create(INVOICES, invoice("C-1", "100.00"))
    voided = company.create(INVOICES, invoice("C-1", "50.00"))
    wait_until(
        lambda: not differences(parts, connection), timeout=30, message="the webhooks' state in FlexPoint"
    )

    # Webhooks are lost for a while, not within the second the records were written: a change
    # inside one second is the sync workers' own second look (workers/sync/handler.py SETTLE_SECONDS).
    # That second look waits in a delay queue: once it is done, a deletion below cannot reach
    # FlexPoint through it (a recheck finding the record gone), only through the sweep.
    wait_until(
        lambda: queues_empty(broker, declared_topology, worker), timeout=30, message="the rechecks done"
    )
    next_second(parts, connection)
    company.webhooks(enabled=False)
    delivered = company.deliveries()
    added = company.create(CUSTOMERS, {"id": "C-3", "name": "Added Ltd", "status": "active"})
    company.update(CUSTOMERS, kept, {"name": "Kept And Renamed Ltd"})
    company.delete(CUSTOMERS, doomed)
    company.create(INVOICES, invoice("C-3", "70.00"))
    company.create(INVOICES, invoice("C-3", "20.00", state="draft"))  # never imported
    company.update(INVOICES, paid, {"description": "changed while webhooks were lost"})
    company.delete(INVOICES, voided)
    company.create(ACCOUNTS, {"id": "4999", "name": "Suspense", "accountType": "balanceSheet"})
    assert company.deliveries() == delivered  # Intacct sent nothing: these are the lost webhooks
    lost = differences(parts, connection)
    assert len(lost) == 7, lost

    options = ScheduleOptions()
    reconciler = parts.reconciler(schedule=options)
    quiet = datetime.now(UTC) + options.gap_spacing
    parts.gaps.beat("test-receiver", quiet)  # the receivers stay up in the injected time
    assert reconciler.sweep_due(quiet) == [], "no gap known: not due"
    # The receiver answered 5xx to this company's deliveries: its hook notes it, its thread flushes.
    gap_at = datetime.now(UTC)
    reporter = GapReporter(parts.gaps, "test-receiver")
    reporter.report(RECEIVER_5XX, connection.connection_id)
    reporter.flush()
    lists_before = flexpoint_list_reads(flexpoint, connection.account_id)
    now, sweep = gap_at, []
    while not sweep and now - gap_at <= options.interval:
        now += timedelta(seconds=options.tick)
        parts.gaps.beat("test-receiver", now)  # the receivers stay up in the injected time
        sweep = reconciler.sweep_due(now)
    assert sweep and now - gap_at <= options.interval, "a known gap is swept within one interval"
    assert {r.resource for r in sweep} == {o.resource for o in OBJECTS}
    # A handful of changes is looked up one record at a time, never by listing the resource.
    assert flexpoint_list_reads(flexpoint, connection.account_id) == lists_before
    assert not [r for r in sweep if r.kind == "failed"], sweep
    assert {r.kind for r in sweep} == {"modified-since"}
    # What FlexPoint lacks or holds older: the draft is not imported, deletions are not seen yet.
    assert published(sweep) == {"customers": (2, 0), "invoices": (2, 0), "gl-accounts": (1, 0)}
    assert all(r.watermark is not None for r in sweep)
    gone = [
        f"customers {doomed}: gone from Intacct, live in FlexPoint",
        f"invoices {voided}: gone from Intacct, live in FlexPoint",
    ]
    wait_until(
        lambda: differences(parts, connection) == sorted(gone),
        timeout=30,
        message="adds and changes in FlexPoint",
    )
    assert (
        parts.flexpoint.get_record(connection.account_id, "customers", added)["data"]["name"] == "Added Ltd"
    )

    assert reconciler.sweep_due(now + timedelta(seconds=options.tick)) == [], "the gap is covered"
    again = reconciler.sweep()
    assert published(again) == {}, "nothing changed: a second sweep publishes nothing"

    keyset = reconciler.sweep_due(connection.created_at + options.keyset_interval)
    assert {r.kind for r in keyset} == {"key-set"}
    assert published(keyset) == {"customers": (0, 1), "invoices": (0, 1)}
    wait_until(lambda: not differences(parts, connection), timeout=30, message="deletions as tombstones")
    for resource, key in (("customers", doomed), ("invoices", voided)):
        assert parts.flexpoint.get_record(connection.account_id, resource, key)["deleted"] is True
    assert published(reconciler.sweep(keyset=True)) == {}


def test_a_loss_nobody_knew_of_is_found_within_the_quiet_interval_and_costs_one_query_per_resource(
    company, worker, parts, live_receiver, intacct
):
    connection = live_receiver.connection
    company.create(CUSTOMERS, {"id": "C-1", "name": "Known Ltd", "status": "active"})
    wait_until(lambda: not differences(parts, connection), timeout=30, message="the webhook's state")
    next_second(parts, connection)
    company.webhooks(enabled=False)  # Intacct drops them on its side: no 5xx, no silence
    lost = company.create(CUSTOMERS, {"id": "C-2", "name": "Lost Ltd", "status": "active"})

    clock = Clock(datetime.now(UTC))
    options = ScheduleOptions()
    reconciler = parts.reconciler(schedule=options, clock=clock)
    # The reconciler's client already holds a token, as a running reconciler's would (the oracle
    # reads the simulator's admin API, so it no longer warms this client as a side effect).
    parts.intacct.query(connection, CUSTOMERS, fields=["key"])
    calls_before = intacct_calls(intacct, connection.company_id)
    swept_at, sweep = None, []
    while swept_at is None and clock.now - connection.created_at <= options.quiet_interval + timedelta(
        minutes=2
    ):
        clock.now += timedelta(seconds=options.tick)
        parts.gaps.beat("test-receiver", clock.now)
        sweep = reconciler.sweep_due(clock.now)
        if sweep:
            swept_at = clock.now
    assert swept_at is not None, "found within the documented bound"
    bound = connection.created_at + options.quiet_interval + timedelta(seconds=options.tick)
    assert connection.created_at + options.quiet_interval <= swept_at <= bound  # not sooner: the budget
    assert {r.kind for r in sweep} == {"modified-since"}
    assert published(sweep) == {"customers": (1, 0)}
    # Every tick before was decided from our own database: the whole wait cost ten queries and
    # no token (the client's cache holds one). The sync worker's fetch of C-2 is no query.
    assert intacct_calls(intacct, connection.company_id) - calls_before == len(OBJECTS)
    wait_until(lambda: not differences(parts, connection), timeout=30, message="the lost record in FlexPoint")
    assert parts.flexpoint.get_record(connection.account_id, "customers", lost)["data"]["name"] == "Lost Ltd"


class Clock:
    """The injected time of the scheduler and the sweeper."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def intacct_calls(intacct, company_id: str) -> int:
    """The simulator's count of the company's queries and token calls (what a sweep may make)."""
    log = requests.get(
        f"{intacct.base_url}/sandbox/requests", params={"companyId": company_id, "limit": 2000}, timeout=10
    ).json()["requests"]
    return sum(1 for r in log if r["path"].endswith(("/services/core/query", "/oauth2/token")))
