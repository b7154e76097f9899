"""A posted payment comes back through the ordinary sync: its ARPYMT webhook, the payment in
FlexPoint with reference ``FP-<paymentId>``, and its invoice's amount due falling there."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
import requests

from observability.metrics import SyncMetrics
from processes.sync import build
from tests.conftest import COMPANY, wait_until
from tests.writeback.conftest import BANK_ACCOUNT, Account, Books, reference_of

pytestmark = pytest.mark.broker


@pytest.fixture
def synced_books(intacct, live_receiver):
    """The receiver's company, its triggers posting to the live receiver."""
    url = f"{live_receiver.base_url}/webhooks/intacct/{live_receiver.connection.connection_id}"
    requests.post(
        f"{intacct.base_url}/sandbox/companies",
        json={"companyId": COMPANY, "webhooks": {"url": url}},
        timeout=10,
    ).raise_for_status()
    books = Books(intacct, COMPANY)
    books.record("accounts-receivable/customer", {"id": "C-1", "name": "Acme Retail"})
    books.record("cash-management/checking-account", BANK_ACCOUNT)
    return books


@pytest.fixture
def sync_worker(wb_settings):
    import threading

    sync = build(wb_settings, SyncMetrics(), window=0.05)
    consumer = sync.consumer
    thread = threading.Thread(target=consumer.run, kwargs={"safety_interval": 0.05}, daemon=True)
    thread.start()
    yield consumer
    consumer.stop()
    thread.join(30)
    sync.close()


def test_a_posted_payment_lowers_its_invoices_amount_due_in_flexpoint_through_the_sync(
    synced_books, live_receiver, sync_worker, start_writeback, fp, broker
):
    connection = live_receiver.connection
    account = Account(synced_books, fp, broker, connection.connection_id, connection.account_id)
    invoice = synced_books.invoice("100.00")

    def in_flexpoint(resource: str, key: str) -> dict | None:
        response = requests.get(
            f"{fp.url}/v1/accounts/{account.account_id}/accounting/{resource}/{key}",
            headers=fp.headers,
            timeout=10,
        )
        return response.json() if response.status_code == 200 else None

    wait_until(lambda: in_flexpoint("invoices", invoice), timeout=30, message="the invoice in FlexPoint")
    start_writeback()
    payment = account.payment({invoice: "60.00"})
    account.publish("payment.post", payment)
    key = account.wait_for(payment, "posted")["intacctKey"]

    synced = wait_until(lambda: in_flexpoint("payments", key), timeout=30, message="the payment synced back")
    assert synced["data"]["referenceNumber"] == reference_of(payment)
    wait_until(
        lambda: Decimal(in_flexpoint("invoices", invoice)["data"]["amountDue"]) == Decimal("40.00"),
        timeout=30,
        message="the invoice's amount due falling to 40.00 in FlexPoint",
    )


def test_a_payment_reversed_in_intacct_shows_voided_in_flexpoint_with_its_invoice_due_again(
    synced_books, live_receiver, sync_worker, start_writeback, fp, intacct, broker
):
    """Issue 28's must-show: a payment reversed in Intacct (the published reverse workflow, run by
    someone in Intacct, not by the write-back) reaches FlexPoint as ``voided``, its invoice's amount
    due back up, and the ``reversal`` record it created is not imported as a payment."""
    connection = live_receiver.connection
    account = Account(synced_books, fp, broker, connection.connection_id, connection.account_id)
    invoice = synced_books.invoice("100.00")

    def in_flexpoint(resource: str, key: str) -> dict | None:
        response = requests.get(
            f"{fp.url}/v1/accounts/{account.account_id}/accounting/{resource}/{key}",
            headers=fp.headers,
            timeout=10,
        )
        return response.json() if response.status_code == 200 else None

    def amount_due() -> Decimal | None:
        record = in_flexpoint("invoices", invoice)
        return None if record is None else Decimal(record["data"]["amountDue"])

    wait_until(lambda: amount_due() == Decimal("100.00"), timeout=30, message="the invoice in FlexPoint")
    start_writeback()
    payment = account.payment({invoice: "60.00"})
    account.publish("payment.post", payment)
    key = account.wait_for(payment, "posted")["intacctKey"]
    wait_until(
        lambda: (p := in_flexpoint("payments", key)) is not None and p["data"]["state"] == "complete",
        timeout=30,
        message="the payment synced back complete",
    )
    wait_until(lambda: amount_due() == Decimal("40.00"), timeout=30, message="the amount due at 40.00")

    token = requests.post(
        f"{intacct.api_url}/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": intacct.config.client_id,
            "client_secret": intacct.config.client_secret,
            "username": f"ws_flexpoint@{COMPANY}",
        },
        timeout=10,
    ).json()["access_token"]
    reversed_ = requests.post(
        f"{intacct.api_url}/workflows/accounts-receivable/payment/reverse",
        json={"key": key, "reversedDate": "2026-12-03", "memo": "Cheque bounced"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert reversed_.status_code in (200, 201), reversed_.text
    reversal_key = str(reversed_.json()["ia::result"]["key"])
    assert reversal_key != key

    wait_until(
        lambda: (p := in_flexpoint("payments", key)) is not None and p["data"]["state"] == "voided",
        timeout=30,
        message="the reversed payment voided in FlexPoint",
    )
    wait_until(
        lambda: amount_due() == Decimal("100.00"),
        timeout=30,
        message="the invoice's amount due back at 100.00",
    )
    reversal = in_flexpoint("payments", reversal_key)
    assert reversal is None or reversal.get("deleted"), reversal


def test_the_tours_payment_step_shows_a_payment_posted_and_synced_back(
    synced_books, live_receiver, sync_worker, start_writeback, fp, wb_settings, monkeypatch, capsys
):
    from clients.flexpoint import FlexPointClient
    from sandbox.tour_payment import pay_one
    from sandbox.tour_support import FlexPointReader

    connection = live_receiver.connection
    invoice = synced_books.invoice("100.00")
    service_view = FlexPointClient(wb_settings.flexpoint_api_url, wb_settings.flexpoint_api_token)
    wait_until(
        lambda: service_view.get_record(connection.account_id, "invoices", invoice),
        timeout=30,
        message="the invoice",
    )
    service_view.close()
    flexpoint = FlexPointReader(wb_settings.flexpoint_api_url, wb_settings.flexpoint_api_token)
    start_writeback()
    # `flexsync sandbox flexpoint pay` reads the simulator and the broker from the environment.
    monkeypatch.setenv("AMQP_URL", wb_settings.amqp_url)
    monkeypatch.setenv("FLEXPOINT_API_URL", wb_settings.flexpoint_api_url)
    monkeypatch.setenv("FLEXPOINT_API_TOKEN", wb_settings.flexpoint_api_token)
    said: list[str] = []
    pay_one(
        said.append,
        flexpoint,
        intacct_admin=synced_books.base,
        company=COMPANY,
        account=connection.account_id,
        connection_id=connection.connection_id,
    )
    flexpoint.close()
    text = "\n".join(said)
    assert "state posted" in text, text
    # The reference posted, shown and synced back is the one the brief gives for this payment.
    found = re.search(r"collects payment (tour-\S+):", text)
    assert found, text
    reference = reference_of({"accountId": connection.account_id, "paymentId": found.group(1)})
    assert f"reference {reference}" in text and f"referenceNumber {reference}" in text, text
    assert f"invoice {invoice} in FlexPoint: amount due 100.00 -> 50.00" in text, text
    # Issue 28's must-show, in the tour: reversed in Intacct, voided in FlexPoint, due again.
    assert "the published reverse workflow" in text and "state voided" in text, text
    assert f"invoice {invoice} in FlexPoint: amount due 50.00 -> 100.00" in text, text
