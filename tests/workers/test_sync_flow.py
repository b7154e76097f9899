"""The sync worker end to end, through the sandbox: Intacct change -> webhook -> queue -> FlexPoint."""

from __future__ import annotations

import json
import threading

import pytest
import requests

from observability.metrics import SyncMetrics
from processes.sync import build
from tests.conftest import COMPANY, wait_until
from workers.runtime.failures import ATTEMPTS, REASON

pytestmark = pytest.mark.broker

CUSTOMERS = "accounts-receivable/customer"


@pytest.fixture
def company(intacct, live_receiver):
    """A simulated company whose triggers post to the live receiver."""
    url = f"{live_receiver.base_url}/webhooks/intacct/{live_receiver.connection.connection_id}"
    admin = f"{intacct.base_url}/sandbox"
    requests.post(
        f"{admin}/companies", json={"companyId": COMPANY, "webhooks": {"url": url}}, timeout=10
    ).raise_for_status()
    return f"{admin}/companies/{COMPANY}/objects"


@pytest.fixture
def worker(live_receiver, intacct, flexpoint):
    settings = live_receiver.parts.settings.with_overrides(
        intacct_api_url=intacct.api_url,
        intacct_client_secret=intacct.config.client_secret,
        flexpoint_api_url=flexpoint.url,
        flexpoint_api_token=flexpoint.config.token,
    )
    metrics = SyncMetrics()
    sync = build(settings, metrics, window=0.05)
    consumer = sync.consumer
    consumer.metrics = metrics
    thread = threading.Thread(target=consumer.run, kwargs={"safety_interval": 0.05}, daemon=True)
    thread.start()
    yield consumer
    consumer.stop()
    thread.join(30)
    sync.close()
    assert not thread.is_alive()


def stored(flexpoint, live_receiver, resource: str, key: str) -> dict | None:
    account = live_receiver.connection.account_id
    response = requests.get(
        f"{flexpoint.url}/v1/accounts/{account}/accounting/{resource}/{key}",
        headers={"Authorization": f"Bearer {flexpoint.config.token}"},
        timeout=10,
    )
    return response.json() if response.status_code == 200 else None


def test_a_new_customer_in_intacct_appears_in_flexpoint_and_its_deletion_as_a_tombstone(
    company, worker, flexpoint, live_receiver, broker
):
    created = requests.post(
        f"{company}/{CUSTOMERS}", json={"id": "C-42", "name": "Forty Two Ltd", "status": "active"}, timeout=10
    )
    key = str(created.json()["key"])
    record = wait_until(
        lambda: stored(flexpoint, live_receiver, "customers", key),
        timeout=30,
        message="the customer in FlexPoint",
    )
    assert record["deleted"] is False
    assert record["data"]["customerId"] == "C-42" and record["data"]["name"] == "Forty Two Ltd"

    requests.delete(f"{company}/{CUSTOMERS}/{key}", timeout=10).raise_for_status()
    wait_until(
        lambda: (stored(flexpoint, live_receiver, "customers", key) or {}).get("deleted"),
        timeout=30,
        message="the tombstone in FlexPoint",
    )
    wait_until(lambda: broker.depth("sync.ar") == 0, message="the queue drained")
    assert broker.depth("dead-letter") == 0


def test_events_for_an_unknown_connection_are_acknowledged_and_dropped(worker, broker):
    envelope = {"connectionId": "no-such-connection", "resource": "customers", "key": "1", "action": "update"}
    broker.publish("intacct.events", "ar.customers.update", json.dumps(envelope).encode())
    wait_until(lambda: broker.depth("sync.ar") == 0, message="the event consumed")
    assert broker.depth("dead-letter") == 0


def test_a_malformed_message_is_dead_lettered_with_its_reason(worker, broker):
    broker.publish("intacct.events", "ar.invoices.update", b'{"resource": "invoices"}')
    wait_until(lambda: broker.depth("dead-letter") == 1, message="the dead letter")
    dead = broker.get("dead-letter")
    headers = dead.properties["application_headers"]
    assert headers[REASON] == "malformed_message" and headers[ATTEMPTS] == 1
    assert "connectionId" in headers["x-flexsync-exception"]


def test_flexpoint_down_sends_the_event_through_a_delay_queue_and_nothing_is_lost(
    company, worker, flexpoint, live_receiver, broker
):
    faults = f"{flexpoint.url}/sandbox/faults"
    token = {"Authorization": f"Bearer {flexpoint.config.token}"}
    requests.put(
        faults, json={"serverErrorRate": 1.0, "seed": 7}, headers=token, timeout=10
    ).raise_for_status()
    created = requests.post(
        f"{company}/{CUSTOMERS}", json={"id": "C-7", "name": "Seven", "status": "active"}, timeout=10
    )
    key = str(created.json()["key"])
    wait_until(
        lambda: broker.depth("sync.ar.delay.2s") == 1,
        timeout=30,
        message="the event in the first delay queue",
    )
    requests.put(faults, json={"serverErrorRate": 0.0}, headers=token, timeout=10).raise_for_status()
    record = wait_until(
        lambda: stored(flexpoint, live_receiver, "customers", key),
        timeout=30,
        message="the customer once FlexPoint is back",
    )
    assert record["data"]["customerId"] == "C-7"
    assert broker.depth("dead-letter") == 0


def test_a_replayed_event_changes_nothing(company, worker, flexpoint, live_receiver, broker):
    created = requests.post(
        f"{company}/{CUSTOMERS}", json={"id": "C-8", "name": "Eight", "status": "active"}, timeout=10
    )
    key = str(created.json()["key"])
    first = wait_until(
        lambda: stored(flexpoint, live_receiver, "customers", key), timeout=30, message="the customer"
    )
    token = {"Authorization": f"Bearer {flexpoint.config.token}"}
    batches_before = len(
        requests.get(f"{flexpoint.url}/sandbox/requests", headers=token, timeout=10).json()["requests"]
    )

    replay = {
        "connectionId": live_receiver.connection.connection_id,
        "resource": "customers",
        "key": key,
        "action": "update",
        "eventId": "replayed",
        "receivedAt": "2026-11-24T10:00:00Z",
    }
    broker.publish("intacct.events", "ar.customers.update", json.dumps(replay).encode())
    wait_until(
        lambda: (
            len(
                requests.get(f"{flexpoint.url}/sandbox/requests", headers=token, timeout=10).json()[
                    "requests"
                ]
            )
            > batches_before
        ),
        timeout=30,
        message="the replay's upsert",
    )
    latest = requests.get(f"{flexpoint.url}/sandbox/requests", headers=token, params={"limit": 1}, timeout=10)
    entry = latest.json()["requests"][0]
    # The replay is a new write of the record read afresh (its own Idempotency-Key, so a record
    # changed and changed back within one second is never answered with an older write's answer):
    # FlexPoint applies it and finds it unchanged.
    assert not entry["replayed"] and entry["outcomes"] == {"unchanged": 1}, entry
    assert stored(flexpoint, live_receiver, "customers", key) == first  # same data, same updatedAt


def test_a_payment_also_brings_the_invoices_it_pays_up_to_date(company, worker, flexpoint, live_receiver):
    customer = requests.post(
        f"{company}/{CUSTOMERS}", json={"id": "C-P", "name": "Payer", "status": "active"}, timeout=10
    ).json()
    invoice = requests.post(
        f"{company}/accounts-receivable/invoice",
        json={
            "customer": {"id": customer["id"]},
            "state": "posted",
            "currency": {"txnCurrency": "USD"},
            "lines": [{"lineNumber": 1, "txnAmount": "100.00", "glAccount": {"id": "4000"}}],
        },
        timeout=10,
    )
    invoice.raise_for_status()
    invoice_key = str(invoice.json()["key"])
    before = wait_until(
        lambda: stored(flexpoint, live_receiver, "invoices", invoice_key),
        timeout=30,
        message="the invoice in FlexPoint",
    )
    assert before["data"]["amountDue"] == "100.00"

    payment = requests.post(
        f"{company}/accounts-receivable/payment",
        json={
            "customer": {"id": customer["id"]},
            "state": "complete",
            "paymentSummary": {"receiptDate": "2026-12-01"},
            "txnCurrency": {"currency": "USD", "totalAmount": "40.00"},
            "paymentDetails": [
                {"arInvoice": {"key": invoice_key}, "txnCurrency": {"paymentAmount": "40.00"}}
            ],
        },
        timeout=10,
    )
    payment.raise_for_status()
    synced = wait_until(
        lambda: stored(flexpoint, live_receiver, "payments", str(payment.json()["key"])),
        timeout=30,
        message="the payment in FlexPoint",
    )
    assert synced["data"]["appliedTo"] == [{"invoiceExternalId": invoice_key, "amount": "40.00"}]
    # Intacct does not fire the invoice's own trigger for this; the payment's event refreshed it.
    after = wait_until(
        lambda: (
            (r := stored(flexpoint, live_receiver, "invoices", invoice_key))
            and r["data"]["amountDue"] == "60.00"
            and r
        ),
        timeout=30,
        message="the refreshed invoice",
    )
    assert after["data"]["state"] == "partially_paid"


def test_a_record_changed_within_the_current_second_is_written_once_more_after_it_settles(
    company, worker, flexpoint, live_receiver, broker
):
    token = {"Authorization": f"Bearer {flexpoint.config.token}"}

    def customer_batches() -> list[dict]:
        log = requests.get(
            f"{flexpoint.url}/sandbox/requests", headers=token, params={"limit": 1000}, timeout=10
        )
        return [r for r in log.json()["requests"] if r["path"].endswith("/customers/batch")]

    requests.post(
        f"{company}/{CUSTOMERS}", json={"id": "C-R", "name": "Recheck", "status": "active"}, timeout=10
    )

    # The worker reads the record within the second it was created: it writes it, then looks again
    # through the shortest delay queue once that second has passed.
    def settled() -> float:
        value = worker.metrics.registry.get_sample_value(
            "flexsync_sync_events_total", {"resource": "customers", "outcome": "done"}
        )
        return value or 0.0

    wait_until(lambda: settled() >= 2, timeout=30, message="the first write and the second look settled")
    # Settling publishes any further look before it acks: none may have been scheduled.
    assert broker.depth("sync.ar.delay.2s") == 0
    assert len(customer_batches()) == 2
