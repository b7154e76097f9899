"""The write-back part of ``./dev run``: FlexPoint collects one payment, and it is posted and synced back.

It picks an open invoice of the demo company, makes the FlexPoint simulator collect a payment of
part of it (``flexsync sandbox flexpoint pay``, which publishes ``payment.post``), then shows the
posting FlexPoint receives and the invoice's amount due falling in FlexPoint through the sync.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from decimal import Decimal
from typing import Any

import requests

from clients.flexpoint import FlexPointClient


def _open_invoice(records: str) -> dict[str, Any] | None:
    listing = requests.get(f"{records}/accounts-receivable/invoice", params={"size": 50}, timeout=10).json()
    for entry in listing["records"]:
        invoice = requests.get(f"{records}/accounts-receivable/invoice/{entry['key']}", timeout=10).json()
        if invoice.get("state") in ("posted", "partiallyPaid") and Decimal(invoice["totalTxnAmountDue"]) > 1:
            return invoice
    return None


def _bank_account(records: str) -> str | None:
    listing = requests.get(
        f"{records}/cash-management/checking-account", params={"size": 1}, timeout=10
    ).json()
    for entry in listing["records"]:
        account = requests.get(
            f"{records}/cash-management/checking-account/{entry['key']}", timeout=10
        ).json()
        return account.get("id")
    return None


def _poll(what: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.25)
    return None


def pay_one(
    say: Any,
    flexpoint: FlexPointClient,
    *,
    intacct_admin: str,
    company: str,
    account: str,
    connection_id: str,
) -> None:
    """Collect one payment in FlexPoint and follow it into Intacct and back."""
    records = f"{intacct_admin}/companies/{company}/objects"
    invoice, bank = _open_invoice(records), _bank_account(records)
    if invoice is None or bank is None:
        say("no open invoice or checking account in the demo company: skipping the payment write-back")
        return
    due = Decimal(invoice["totalTxnAmountDue"])
    amount = (due / 2).quantize(Decimal("0.01"))
    payment_id = f"demo-{uuid.uuid4().hex[:10]}"
    customer = (invoice.get("customer") or {}).get("id")
    say(
        f"FlexPoint collects payment {payment_id}: {amount} from {customer} for invoice {invoice['key']} "
        f"(amount due {due}), via `flexsync sandbox flexpoint pay`"
    )
    subprocess.run(  # noqa: S603 - our own CLI, with values read from the simulators
        [sys.executable, "-m", "cli.main", "sandbox", "flexpoint", "pay", "--account", account,
         "--connection", connection_id, "--customer", str(customer), "--amount", str(amount),
         "--invoice", f"{invoice['key']}:{amount}", "--bank", str(bank), "--payment-id", payment_id],
        check=True,
    )  # fmt: skip
    posting = _poll(
        lambda: (
            (p := flexpoint.get_posting(account, payment_id)) is not None and p["state"] != "posting" and p
        ),
        timeout=60,
    )
    if not posting:
        say("the writeback worker has not reported the posting yet (is `writeback` running?)")
        return
    say(
        f"the writeback worker posted it into Intacct once: state {posting['state']}, Intacct key "
        f"{posting.get('intacctKey')}, reference FP-{payment_id}"
        + (f", reason {posting['reason']}" if posting.get("reason") else "")
    )
    if posting["state"] != "posted":
        return
    synced = _poll(lambda: flexpoint.get_record(account, "payments", posting["intacctKey"]), timeout=30)
    if synced:
        say(
            f"its ARPYMT webhook brought the payment back through the sync: referenceNumber {synced['data'].get('referenceNumber')}"
        )
    lowered = _poll(
        lambda: (
            (r := flexpoint.get_record(account, "invoices", str(invoice["key"]))) is not None
            and Decimal(r["data"]["amountDue"]) < due
            and r
        ),
        timeout=30,
    )
    if lowered:
        say(f"invoice {invoice['key']} in FlexPoint: amount due {due} -> {lowered['data']['amountDue']}")
