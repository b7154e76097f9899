"""The failure reasons of a posting and what each tells the customer's admin to do.

Intacct's refusals (intacct-rest.md "Writing payments") are mapped by their status and the field
they name (``ia::error.details[].target``, a slash path), then by their code, then by their text
when Intacct says neither; the service's own checks before the create use the same reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clients.intacct import IntacctError, PermissionDenied

SETUP_STEP = (
    "In Sage Intacct, give the FlexPoint Web Services user's role Accounts Receivable > Received "
    "payments: Add (setup guide, step 1), then send the payment again from FlexPoint."
)


@dataclass(frozen=True)
class PostingRefusal:
    """A posting refused: the reason code FlexPoint shows and the sentence telling what to fix."""

    reason: str
    message: str


def connection_inactive() -> PostingRefusal:
    return PostingRefusal(
        "connection_inactive",
        "FlexPoint is not connected to Sage Intacct for this account: reconnect it, then send the payment again.",
    )


def cancelled() -> PostingRefusal:
    return PostingRefusal(
        "cancelled", "The payment was reversed in FlexPoint before it was posted: nothing was posted."
    )


def customer_not_found(customer_id: str) -> PostingRefusal:
    return PostingRefusal(
        "customer_not_found",
        f"Customer {customer_id} does not exist in Sage Intacct: check the customer ID in FlexPoint.",
    )


def invoice_not_found(key: str, detail: str = "does not exist in Sage Intacct") -> PostingRefusal:
    return PostingRefusal(
        "invoice_not_found",
        f"Invoice {key} {detail}: apply the payment to the customer's open invoices.",
    )


def invoice_not_open(key: str, state: str | None = None) -> PostingRefusal:
    said = f" (it is {state})" if state else ""
    return PostingRefusal(
        "invoice_not_open",
        f"Invoice {key} is not open{said}: apply the payment to open invoices or leave it unapplied.",
    )


def over_application(what: str) -> PostingRefusal:
    return PostingRefusal("over_application", f"{what}: lower the amounts applied.")


def currency_mismatch(key: str, invoice_currency: str, currency: str) -> PostingRefusal:
    return PostingRefusal(
        "currency_mismatch",
        f"Invoice {key} is in {invoice_currency} but the payment is in {currency}: "
        "pay it in the invoice's currency.",
    )


def bank_account_not_found(account: str) -> PostingRefusal:
    return PostingRefusal(
        "bank_account_not_found",
        f"Account {account} does not exist in Sage Intacct: choose another deposit account in FlexPoint's "
        "payment settings.",
    )


def period_closed(date: str) -> PostingRefusal:
    return PostingRefusal(
        "period_closed",
        f"The books are closed for {date} in Sage Intacct: reopen the period or ask FlexPoint to post "
        "the payment on an open date.",
    )


def permission_denied(*, read: bool = False) -> PostingRefusal:
    if read:
        return PostingRefusal(
            "permission_denied",
            "The FlexPoint role cannot read Accounts Receivable in Sage Intacct: give it Accounts "
            "Receivable's read permissions and Received payments: Add (setup guide, step 1), then send "
            "the payment again from FlexPoint.",
        )
    return PostingRefusal("permission_denied", SETUP_STEP)


def invalid_request(said: str) -> PostingRefusal:
    return PostingRefusal(
        "invalid_request",
        f"Sage Intacct refused the payment as malformed ({said[:200]}); FlexPoint support has been told.",
    )


def for_refusal(exc: IntacctError, post: dict[str, Any]) -> PostingRefusal:
    """The verdict for Intacct's own refusal of a create (403, 404, 422, 400).

    Read in the order of what Sage publishes: the status and the field the refusal names
    (``details[].target``, a slash path such as ``/paymentDetails/0/arInvoice/key``) first; the code
    (Sage publishes only ``invalidRequest``; the others are the simulator's conventions) second;
    the message text last.
    """
    if isinstance(exc, PermissionDenied) or exc.status == 403:
        return permission_denied()
    detail = _first_detail(exc)
    segments = target_segments(str(detail.get("target") or ""))
    code = str(detail.get("code") or exc.code or "")
    text = f"{detail.get('message') or ''} {exc.message}".lower()
    invoice = _invoice_of(segments, post)
    by_target = _by_target(exc.status, segments, invoice, code, text, post)
    if by_target is not None:
        return by_target
    by_code = _by_code(code, invoice, post)
    if by_code is not None:
        return by_code
    return _by_text(exc.status, text, invoice, post) or invalid_request(exc.message)


def target_segments(target: str) -> list[str]:
    """A refusal's target as path segments: ``/paymentDetails/0/arInvoice/key`` (Sage's slash paths)
    and, should one come, ``paymentDetails[0].arInvoice.key`` both give
    ``["paymentDetails", "0", "arInvoice", "key"]``."""
    text = target.strip()
    if "/" not in text:
        text = text.replace("[", ".").replace("]", "")
        return [part for part in text.split(".") if part]
    return [part for part in text.split("/") if part]


def _by_target(
    status: int | None, segments: list[str], invoice: str, code: str, text: str, post: dict[str, Any]
) -> PostingRefusal | None:
    if not segments or status not in (400, 404, 422):
        return None
    head = segments[0]
    if status == 400:
        # A schema refusal naming a field: our body is wrong, not the customer's data.
        return None
    if head == "customer":
        return customer_not_found(post["customerId"])
    if head in ("financialEntity", "undepositedGLAccount"):
        return bank_account_not_found(_account(post))
    if head == "paymentSummary" and status == 422:
        return period_closed(post["receivedOn"].isoformat())
    if head == "txnCurrency" and status == 422 and "currency" in segments:
        return currency_mismatch(invoice, "another currency", post["currency"])
    if head == "paymentDetails":
        if status == 404:
            return invoice_not_found(invoice)
        if "paymentAmount" in segments:
            return over_application(f"Sage Intacct refused the amount applied to invoice {invoice}")
        # The invoice itself refused (422): which rule the code or the text says, else not open.
        return (
            _by_code(code, invoice, post)
            or _by_text(status, text, invoice, post)
            or invoice_not_open(invoice)
        )
    return None


def _by_code(code: str, invoice: str, post: dict[str, Any]) -> PostingRefusal | None:
    if code == "periodClosed":
        return period_closed(post["receivedOn"].isoformat())
    if code == "invoiceNotOpen":
        return invoice_not_open(invoice)
    if code == "currencyMismatch":
        return currency_mismatch(invoice, "another currency", post["currency"])
    if code == "overApplication":
        return over_application(f"Sage Intacct refused an amount applied to invoice {invoice}")
    if code == "invoiceCustomerMismatch":
        return invoice_not_found(invoice, f"belongs to another customer than {post['customerId']}")
    return None


def _by_text(status: int | None, text: str, invoice: str, post: dict[str, Any]) -> PostingRefusal | None:
    if "closed" in text and "period" in text:
        return period_closed(post["receivedOn"].isoformat())
    if "not open" in text:
        return invoice_not_open(invoice)
    if "currency" in text and status == 422:
        return currency_mismatch(invoice, "another currency", post["currency"])
    if "amount due" in text or "exceed" in text:
        return over_application(f"Sage Intacct refused an amount applied to invoice {invoice}")
    if status in (404, 422):
        if "customer" in text and "invoice" not in text:
            return customer_not_found(post["customerId"])
        if "account" in text:
            return bank_account_not_found(_account(post))
        if "invoice" in text:
            return invoice_not_found(invoice)
    return None


def _account(post: dict[str, Any]) -> str:
    return str(post.get("depositBankAccountId") or post.get("undepositedGLAccountId") or "?")


def _first_detail(exc: IntacctError) -> dict[str, Any]:
    details = getattr(exc, "details", None) or []
    return details[0] if details and isinstance(details[0], dict) else {}


def _invoice_of(segments: list[str], post: dict[str, Any]) -> str:
    """The invoice key a target like ``/paymentDetails/1/arInvoice/key`` points at (else the first)."""
    allocations = post["allocations"]
    if len(segments) > 1 and segments[0] == "paymentDetails" and segments[1].isdigit():
        index = int(segments[1])
        if index < len(allocations):
            return str(allocations[index]["invoiceExternalId"])
    return str(allocations[0]["invoiceExternalId"]) if allocations else "?"
