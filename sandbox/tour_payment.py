"""The write-back step of the tour: FlexPoint collects one payment, the service posts it, it syncs back.

It picks an open invoice of the tour's company, has the FlexPoint simulator collect part of it
(``flexsync sandbox flexpoint pay``, which publishes ``payment.post``), then follows the posting
FlexPoint receives and the invoice's amount due falling in FlexPoint through the sync.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import requests

from sandbox.tour_support import FlexPointReader, TourError, wait_for


def _open_invoice(records: str) -> dict[str, Any] | None:
    listing = requests.get(f"{records}/accounts-receivable/invoice", params={"size": 50}, timeout=10).json()
    for entry in listing["records"]:
        invoice = requests.get(f"{records}/accounts-receivable/invoice/{entry['key']}", timeout=10).json()
        if invoice.get("state") in ("posted", "partiallyPaid") and Decimal(invoice["totalTxnAmountDue"]) > 1:
            return invoice
    return None


def _bank_account_id(records: str) -> str | None:
    listing = requests.get(
        f"{records}/cash-management/checking-account", params={"size": 1}, timeout=10
    ).json()
    for entry in listing["records"]:
        account = requests.get(
            f"{records}/cash-management/checking-account/{entry['key']}", timeout=10
        ).json()
        return account.get("id")
    return None


def _maybe(condition: Callable[[], Any], *, timeout: float, what: str) -> Any:
    """Like wait_for, but None at the deadline: the tour reports the gap and goes on."""
    try:
        return wait_for(condition, timeout=timeout, what=what)
    except TourError:
        return None


def pay_one(
    say: Callable[[str], None],
    flexpoint: FlexPointReader,
    *,
    intacct_admin: str,
    company: str,
    account: str,
    connection_id: str,
    posting_timeout: float = 60.0,
    sync_timeout: float = 30.0,
) -> None:
    """Collect one payment in FlexPoint and follow it into Intacct and back, saying what happens."""
    records = f"{intacct_admin}/companies/{company}/objects"
    invoice, bank = _open_invoice(records), _bank_account_id(records)
    if invoice is None or bank is None:
        say("no open invoice or checking account in the tour's company: skipping the payment write-back")
        return
    due = Decimal(invoice["totalTxnAmountDue"])
    amount = (due / 2).quantize(Decimal("0.01"))
    payment_id = f"tour-{uuid.uuid4().hex[:10]}"
    customer = (invoice.get("customer") or {}).get("id")
    say(
        f"FlexPoint collects payment {payment_id}: {amount} from {customer} for invoice {invoice['key']} "
        f"(amount due {due}), via `flexsync sandbox flexpoint pay`"
    )
    subprocess.run(  # noqa: S603 - the sandbox's own command, with values read from the simulators
        [sys.executable, "-m", "sandbox", "flexpoint", "pay", "--account", account,
         "--connection", connection_id, "--customer", str(customer), "--amount", str(amount),
         "--invoice", f"{invoice['key']}:{amount}", "--bank", str(bank), "--payment-id", payment_id,
         "--url", flexpoint.base_url],
        check=True,
    )  # fmt: skip

    def reported() -> dict[str, Any] | None:
        posting = flexpoint.posting(account, payment_id)
        return posting if posting is not None and posting["state"] != "posting" else None

    posting = _maybe(reported, timeout=posting_timeout, what="posting report")
    if not posting:
        say("the writeback worker has not reported the posting yet (is `writeback` running?)")
        return
    say(
        f"the writeback worker posted it into Intacct once: state {posting['state']}, Intacct key "
        f"{posting.get('intacctKey')}, reference {posting.get('intacctReference')}"
        + (f", reason {posting['reason']}" if posting.get("reason") else "")
    )
    if posting["state"] != "posted":
        return
    synced = _maybe(
        lambda: flexpoint.record(account, "payments", str(posting["intacctKey"])),
        timeout=sync_timeout,
        what="the payment in FlexPoint",
    )
    if synced:
        say(
            "its ARPYMT webhook brought the payment back through the sync: "
            f"referenceNumber {synced['data'].get('referenceNumber')}"
        )

    def lowered() -> dict[str, Any] | None:
        record = flexpoint.record(account, "invoices", str(invoice["key"]))
        return record if record is not None and Decimal(record["data"]["amountDue"]) < due else None

    record = _maybe(lowered, timeout=sync_timeout, what="the invoice's lower amount due")
    if record:
        say(f"invoice {invoice['key']} in FlexPoint: amount due {due} -> {record['data']['amountDue']}")
