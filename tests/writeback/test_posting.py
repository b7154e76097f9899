"""payment.post end to end: posted once and applied, replays re-reported, every refusal's reason."""

from __future__ import annotations

from decimal import Decimal

import pytest

from broker.topology import DEAD_LETTER_QUEUE_NAME
from tests.conftest import wait_until
from tests.writeback.conftest import reference_of
from workers.runtime.failures import REASON

pytestmark = pytest.mark.broker


def test_a_payment_is_posted_applied_and_reported_with_its_key(make_account, start_writeback):
    account = make_account()
    first, second = account.books.invoice("1000.00"), account.books.invoice("250.00")
    worker = start_writeback()
    payment = account.payment({first: "600.00", second: "250.00"}, amount="900.00", method="check")

    account.publish("payment.post", payment)
    report = account.wait_for(payment, "posted")

    stored = account.books.payments(reference_of(payment))
    assert len(stored) == 1
    assert report["intacctKey"] == str(stored[0]["key"])
    assert report["reason"] is None and report["postedAt"]
    assert stored[0]["paymentMethod"] == "printedCheck"
    assert Decimal(stored[0]["txnCurrency"]["totalAmount"]) == Decimal("900.00")
    assert Decimal(account.books.get_invoice(first)["totalTxnAmountDue"]) == Decimal("400.00")
    assert Decimal(account.books.get_invoice(second)["totalTxnAmountDue"]) == Decimal("0.00")
    registry = worker.parts.metrics.registry
    assert registry.get_sample_value("flexsync_writeback_postings_total", {"outcome": "posted"}) == 1
    assert registry.get_sample_value("flexsync_writeback_posted_seconds_count") == 1


def test_a_replayed_post_re_reports_the_same_key_and_creates_nothing(make_account, start_writeback, intacct):
    account = make_account()
    invoice = account.books.invoice("100.00")
    start_writeback()
    payment = account.payment({invoice: "100.00"})
    account.publish("payment.post", payment)
    key = account.wait_for(payment, "posted")["intacctKey"]

    for _ in range(3):
        account.publish("payment.post", {**payment, "messageId": f"replay-{_}"})
    wait_until(
        lambda: len(account.fp.payment(account.account_id, payment["paymentId"])["reports"]) >= 4,
        timeout=30,
        message="the replays' reports",
    )
    reports = account.fp.payment(account.account_id, payment["paymentId"])["reports"]
    assert {r["intacctKey"] for r in reports} == {key}
    assert {r["state"] for r in reports} == {"posted"}
    assert all(r["replayed"] for r in reports[1:])  # same Idempotency-Key and body
    assert len(account.books.payments(reference_of(payment))) == 1


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"customerId": "C-404"}, "customer_not_found"),
        ({"depositBankAccountId": "BANK-404"}, "bank_account_not_found"),
        ({"depositBankAccountId": None, "undepositedGLAccountId": "9999"}, "bank_account_not_found"),
        ({"allocations": [{"invoiceExternalId": "999999", "amount": "10.00"}]}, "invoice_not_found"),
        (
            {"allocations": [{"invoiceExternalId": "{invoice}", "amount": "150.00"}], "amount": "150.00"},
            "over_application",
        ),
        ({"currency": "EUR"}, "currency_mismatch"),
        ({"receivedOn": "2026-09-30"}, "period_closed"),
    ],
)
def test_each_refusal_is_reported_failed_with_its_reason_and_nothing_is_posted(
    make_account, start_writeback, change, reason
):
    account = make_account()
    account.books.configure(booksClosedThrough="2026-10-31")
    invoice = account.books.invoice("100.00")
    start_writeback()
    for allocation in change.get("allocations", []):
        allocation["invoiceExternalId"] = allocation["invoiceExternalId"].replace("{invoice}", invoice)
    payment = account.payment({invoice: "100.00"}, **change)

    account.publish("payment.post", payment)
    report = account.wait_for(payment, "failed")

    assert report["reason"] == reason
    assert report["message"] and report["intacctKey"] is None
    assert account.books.payments(reference_of(payment)) == []
    assert Decimal(account.books.get_invoice(invoice)["totalTxnAmountDue"]) == Decimal("100.00")


def test_allocations_above_the_amount_are_refused_before_any_intacct_call(make_account, start_writeback):
    account = make_account()
    invoice = account.books.invoice("100.00")
    start_writeback()
    payment = account.payment({invoice: "100.00"})
    # FlexPoint itself would not send this; a message that does is refused, not posted.
    account.publish("payment.post", {**payment, "amount": "50.00"})
    report = account.wait_for(payment, "failed")
    assert report["reason"] == "over_application"
    assert "100.00" in report["message"] and "50.00" in report["message"]
    assert account.books.payments(reference_of(payment)) == []


def test_an_invoice_already_paid_is_not_open(make_account, start_writeback):
    account = make_account()
    invoice = account.books.invoice("100.00")
    start_writeback()
    paying = account.payment({invoice: "100.00"})
    account.publish("payment.post", paying)
    account.wait_for(paying, "posted")

    late = account.payment({invoice: "40.00"})
    account.publish("payment.post", late)
    report = account.wait_for(late, "failed")
    assert report["reason"] == "invoice_not_open"
    assert invoice in report["message"]


def test_a_role_without_the_add_permission_is_reported_with_the_setup_step(make_account, start_writeback):
    account = make_account()
    account.books.configure(receivedPaymentsAdd=False)
    invoice = account.books.invoice("100.00")
    start_writeback()
    payment = account.payment({invoice: "100.00"})
    account.publish("payment.post", payment)
    report = account.wait_for(payment, "failed")
    assert report["reason"] == "permission_denied"
    assert "Received payments: Add" in report["message"]

    # The admin fixes the role; FlexPoint sends the payment again and it is posted.
    account.books.configure(receivedPaymentsAdd=True)
    account.publish("payment.post", {**payment, "messageId": "again"})
    account.wait_for(payment, "posted")
    assert len(account.books.payments(reference_of(payment))) == 1


def test_an_unknown_or_disconnected_connection_is_reported_connection_inactive(
    make_account, start_writeback, connections
):
    account = make_account()
    invoice = account.books.invoice("100.00")
    connections.disconnect(account.connection_id)
    start_writeback()
    payment = account.payment({invoice: "100.00"})
    account.publish("payment.post", payment)
    report = account.wait_for(payment, "failed")
    assert report["reason"] == "connection_inactive"
    assert account.books.payments(reference_of(payment)) == []


def test_a_malformed_message_is_dead_lettered_with_its_reason(make_account, start_writeback, broker):
    account = make_account()
    start_writeback()
    account.publish("payment.post", {"messageId": "m-1", "accountId": account.account_id, "amount": 12.5})
    message = wait_until(lambda: broker.get(DEAD_LETTER_QUEUE_NAME), timeout=30, message="the dead letter")
    assert message.headers[REASON] == "malformed_message"


def test_a_role_that_cannot_read_receivables_is_reported_permission_denied(make_account, start_writeback):
    account = make_account(
        users=[{"userId": "ws_flexpoint", "areas": ["company", "general-ledger", "cash-management"]}]
    )
    start_writeback()
    payment = account.payment({"1": "10.00"})
    account.publish("payment.post", payment)
    report = account.wait_for(payment, "failed")
    assert report["reason"] == "permission_denied"
    assert "read permissions" in report["message"]


def test_outages_wait_and_retry_and_are_never_reported_failed(
    make_account, start_writeback, intacct, fp, broker
):
    import requests

    account = make_account()
    invoice = account.books.invoice("100.00")
    requests.patch(
        f"{intacct.base_url}/sandbox/faults", json={"errorRate": 1.0, "errorStatus": 503}, timeout=10
    )
    fp.faults(serverErrorRate=1.0)
    start_writeback()
    payment = account.payment({invoice: "100.00"})
    account.publish("payment.post", payment)
    wait_until(
        lambda: broker.depth("writeback.delay.2s") + broker.depth("writeback.delay.10s") > 0,
        timeout=30,
        message="the payment waiting in a delay queue",
    )
    assert account.fp.posting(account.account_id, payment["paymentId"]) is None
    requests.patch(f"{intacct.base_url}/sandbox/faults", json={"errorRate": 0.0}, timeout=10)
    fp.faults(serverErrorRate=0.0)
    report = account.wait_for(payment, "posted", timeout=60)
    reports = account.fp.payment(account.account_id, payment["paymentId"])["reports"]
    assert [r["state"] for r in reports if not r["replayed"]] == ["posted"]
    assert len(account.books.payments(reference_of(payment))) == 1
    assert report["intacctKey"]
    assert broker.depth(DEAD_LETTER_QUEUE_NAME) == 0
