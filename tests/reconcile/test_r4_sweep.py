"""QUALITY R4: webhooks lost while Intacct changes; one sweep brings FlexPoint to Intacct's state.

Through the real simulators, RabbitMQ and sync workers: the starting state arrives by webhook,
then the company's triggers are switched off while records are added, changed and deleted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests

from schemas.catalog import BY_RESOURCE
from tests.conftest import wait_until
from tests.reconcile.conftest import differences
from workers.reconcile.compare import instant

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
    company, worker, parts, live_receiver, flexpoint
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

    reconciler = parts.reconciler()
    lists_before = flexpoint_list_reads(flexpoint, connection.account_id)
    sweep = reconciler.sweep()
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

    again = reconciler.sweep()
    assert published(again) == {}, "nothing changed: a second sweep publishes nothing"

    keyset = reconciler.sweep(keyset=True)
    assert {r.kind for r in keyset} == {"key-set"}
    assert published(keyset) == {"customers": (0, 1), "invoices": (0, 1)}
    wait_until(lambda: not differences(parts, connection), timeout=30, message="deletions as tombstones")
    for resource, key in (("customers", doomed), ("invoices", voided)):
        assert parts.flexpoint.get_record(connection.account_id, resource, key)["deleted"] is True
    assert published(reconciler.sweep(keyset=True)) == {}
