"""payment.reverse: a posted payment reversed once; one not yet posted withdrawn, in either order."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.conftest import wait_until
from tests.writeback.conftest import reference_of

pytestmark = pytest.mark.broker


def test_a_posted_payment_is_reversed_once_and_its_invoice_is_due_again(make_account, start_writeback):
    account = make_account()
    invoice = account.books.invoice("300.00")
    start_writeback()
    payment = account.payment({invoice: "300.00"})
    account.publish("payment.post", payment)
    key = account.wait_for(payment, "posted")["intacctKey"]
    assert Decimal(account.books.get_invoice(invoice)["totalTxnAmountDue"]) == Decimal("0.00")

    reverse = account.reverse_of(payment)
    account.publish("payment.reverse", reverse)
    report = account.wait_for(payment, "reversed")
    assert report["intacctKey"] == key
    (stored,) = account.books.payments(reference_of(payment))
    assert stored["state"] == "reversed"
    # The published workflow: a new ``reversal`` record, the reference copied onto it.
    (reversal,) = [
        p for p in account.books.payments(reference_of(payment), reversals=True) if p["state"] == "reversal"
    ]
    assert str(reversal["key"]) != key
    assert Decimal(account.books.get_invoice(invoice)["totalTxnAmountDue"]) == Decimal("300.00")

    # A replayed reverse, and a replayed post, change nothing and re-report the state.
    account.publish("payment.reverse", {**reverse, "messageId": "again"})
    account.publish("payment.post", {**payment, "messageId": "again"})
    wait_until(
        lambda: len(account.fp.payment(account.account_id, payment["paymentId"])["reports"]) >= 4,
        timeout=30,
        message="the replays' reports",
    )
    states = [r["state"] for r in account.fp.payment(account.account_id, payment["paymentId"])["reports"]]
    assert states[:2] == ["posted", "reversed"]
    assert set(states[2:]) <= {"reversed", "posted"}
    assert account.fp.posting(account.account_id, payment["paymentId"])["state"] in ("reversed", "posted")
    (stored,) = account.books.payments(reference_of(payment))
    assert stored["state"] == "reversed"


def test_a_reverse_before_the_post_cancels_it_and_nothing_is_ever_created(make_account, start_writeback):
    account = make_account()
    invoice = account.books.invoice("80.00")
    start_writeback()
    payment = account.payment({invoice: "80.00"})

    account.publish("payment.reverse", account.reverse_of(payment))
    report = account.wait_for(payment, "failed")
    assert report["reason"] == "cancelled"
    assert "nothing was posted" in report["message"]

    account.publish("payment.post", payment)  # the post, processed after its reverse
    wait_until(
        lambda: len(account.fp.payment(account.account_id, payment["paymentId"])["reports"]) >= 2,
        timeout=30,
        message="the post's report",
    )
    assert account.fp.posting(account.account_id, payment["paymentId"])["reason"] == "cancelled"
    assert account.books.payments(reference_of(payment)) == []
    assert Decimal(account.books.get_invoice(invoice)["totalTxnAmountDue"]) == Decimal("80.00")


def test_post_and_reverse_together_end_with_nothing_complete_in_intacct(make_account, start_writeback):
    account = make_account()
    invoices = [account.books.invoice("10.00") for _ in range(6)]
    start_writeback(workers=4)
    payments = [account.payment({key: "10.00"}) for key in invoices]
    for payment in payments:
        account.publish("payment.post", payment)
        account.publish("payment.reverse", account.reverse_of(payment))

    def final(payment):
        posting = account.fp.posting(account.account_id, payment["paymentId"])
        if posting is None:
            return False
        return posting["state"] == "reversed" or (
            posting["state"] == "failed" and posting["reason"] == "cancelled"
        )

    wait_until(
        lambda: all(final(p) for p in payments), timeout=60, message="every payment reversed or cancelled"
    )
    for payment, invoice in zip(payments, invoices, strict=True):
        stored = account.books.payments(reference_of(payment))
        posting = account.fp.posting(account.account_id, payment["paymentId"])
        assert len(stored) == (1 if posting["state"] == "reversed" else 0)
        assert all(s["state"] == "reversed" for s in stored)
        assert Decimal(account.books.get_invoice(invoice)["totalTxnAmountDue"]) == Decimal("10.00")


def test_a_reverse_committed_then_failed_is_resolved_by_reading_the_payment(
    make_account, start_writeback, intacct
):
    import requests

    account = make_account()
    invoice = account.books.invoice("40.00")
    start_writeback()
    payment = account.payment({invoice: "40.00"})
    account.publish("payment.post", payment)
    account.wait_for(payment, "posted")

    account.books.configure(writeFaults={"commitErrorRate": 1.0})
    account.publish("payment.reverse", account.reverse_of(payment))
    account.wait_for(payment, "reversed")
    stats = requests.get(
        f"{intacct.base_url}/sandbox/stats", params={"companyId": account.books.company_id}, timeout=10
    )
    calls = stats.json()["calls"][account.books.company_id]
    assert calls["accounts-receivable/payment:reverse"] == 1  # resolved by reading, not reversed again
    (stored,) = account.books.payments(reference_of(payment))
    assert stored["state"] == "reversed"
