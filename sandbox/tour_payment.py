"""The write-back step of the tour: FlexPoint collects one payment, the service posts it, it syncs back.

It picks an open invoice of the tour's company, has the FlexPoint simulator collect part of it
(``flexsync sandbox flexpoint pay``, which publishes ``payment.post``), then follows the posting
FlexPoint receives and the invoice's amount due falling in FlexPoint through the sync. Then
someone in Intacct reverses that payment (the published reverse workflow: a ``reversal`` record,
the original ``reversed``), and FlexPoint shows it voided with the invoice's amount due back up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

import requests

from sandbox.intacct.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from sandbox.tour_support import FlexPointReader, TourError, wait_for

USER = "ws_flexpoint"  # the Intacct simulator's default Web Services user


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


def _reverse_in_intacct(intacct_admin: str, company: str, key: str) -> dict[str, Any]:
    """Reverse payment ``key`` through Intacct's API, as a user of the company would."""
    api = intacct_admin.removesuffix("/sandbox") + "/ia/api/v1"
    token = requests.post(
        f"{api}/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": os.environ.get("INTACCT_CLIENT_ID") or DEFAULT_CLIENT_ID,
            "client_secret": os.environ.get("INTACCT_CLIENT_SECRET") or DEFAULT_CLIENT_SECRET,
            "username": f"{USER}@{company}",
        },
        timeout=10,
    )
    token.raise_for_status()
    answer = requests.post(
        f"{api}/workflows/accounts-receivable/payment/reverse",
        json={"key": key, "reversedDate": date.today().isoformat(), "memo": "Reversed in the tour"},
        headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        timeout=10,
    )
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()["ia::result"]
    return result


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
    if not record:
        return
    lowered_due = record["data"]["amountDue"]
    key = str(posting["intacctKey"])
    reversal = _reverse_in_intacct(intacct_admin, company, key)
    say(
        f"someone in Intacct reversed payment {key} (the published reverse workflow): reversal record "
        f"{reversal.get('key')}, the payment now `reversed`"
    )

    def voided() -> dict[str, Any] | None:
        payment = flexpoint.record(account, "payments", key)
        return payment if payment is not None and payment["data"].get("state") == "voided" else None

    def due_again() -> dict[str, Any] | None:
        record = flexpoint.record(account, "invoices", str(invoice["key"]))
        return record if record is not None and Decimal(record["data"]["amountDue"]) == due else None

    if _maybe(voided, timeout=sync_timeout, what="the reversed payment voided in FlexPoint"):
        say(f"payment {key} in FlexPoint: state voided")
    back = _maybe(due_again, timeout=sync_timeout, what="the invoice's amount due back up")
    if back:
        say(f"invoice {invoice['key']} in FlexPoint: amount due {lowered_due} -> {back['data']['amountDue']}")
