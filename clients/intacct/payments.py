"""Intacct's AR payment writes (intacct-rest.md "Writing payments"): create, find by reference, reverse.

Field paths come from :mod:`schemas.intacct_fields` (``Payment``, ``PaymentDetail``, ``Invoice``).
Reads go through the client's retrying calls; the create and the reverse are sent once
(``IntacctClient.write_once``), each with its ``Idempotency-Key``: an unknown outcome is resolved
by the caller, by looking.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from contextlib import AbstractContextManager
from decimal import Decimal
from typing import Any

from clients.intacct.client import IntacctClient
from clients.intacct.errors import (
    CompanyBusy,
    IntacctBreakerOpen,
    IntacctError,
    IntacctUnavailable,
    RateLimited,
    TokenInvalid,
)
from clients.intacct.tokens import IntacctConnection
from schemas.intacct_fields import (
    PAYMENT_REVERSE_PATH,
    Invoice,
    Payment,
    PaymentDetail,
)
from schemas.mappings.records import flatten, unflatten

PAYMENT_PATH = Payment.object_path
INVOICE_PATH = Invoice.object_path
REVERSE_PATH = PAYMENT_REVERSE_PATH
# BRIEF.md: FlexPoint's method -> Intacct's paymentMethod.
PAYMENT_METHODS = {"ach": "eft", "card": "creditCard", "check": "printedCheck", "wire": "eft", "cash": "cash"}
# The flat invoice fields the pre-checks read from a batch GET.
INVOICE_STATE = Invoice.STATE
INVOICE_CURRENCY = Invoice.CURRENCY
INVOICE_AMOUNT_DUE = Invoice.DUE
INVOICE_CUSTOMER = Invoice.CUSTOMER
# Intacct invoice states a payment may be applied to (selected: selected for payment, still due).
OPEN_INVOICE_STATES = frozenset({"posted", "partiallyPaid", "selected"})
# A reversed payment: Sage's text says ``reversed``, its example ``reversal`` (until the reversal date).
REVERSED_PAYMENT_STATES = frozenset({"reversed", "reversal"})
# The mirror record a reverse creates; it may carry the original's reference, so lookups skip it.
REVERSAL_STATE = "reversal"
REFERENCE_LENGTH = 21  # Payment.REFERENCE's published maxLength
DESCRIPTION_LENGTH = 1000  # Payment.DESCRIPTION's published maxLength
# Sent but not known to have happened (intacct-rest.md): any 5xx, 408, 409, a timeout, an unreadable 2xx.
UNKNOWN_STATUSES = frozenset({408, 409})
# Not sent, or refused before anything was done: known not to have happened.
NOT_SENT = (RateLimited, CompanyBusy, TokenInvalid, IntacctBreakerOpen)


def reference_for(account_id: str, payment_id: str) -> str:
    """The ``referenceNumber`` a FlexPoint payment is posted under (BRIEF.md): ``FP-`` and the first 18
    characters of the unpadded upper-case base32 of SHA-256(``accountId:paymentId``), 21 in all."""
    digest = hashlib.sha256(f"{account_id}:{payment_id}".encode()).digest()
    return "FP-" + base64.b32encode(digest).decode("ascii").rstrip("=")[:18]


def description_for(payment_id: str, memo: str | None) -> str:
    """The payment's description: it names the FlexPoint payment, then the memo, within 1000 characters."""
    text = f"FlexPoint payment {payment_id}" + (f": {memo}" if memo else "")
    return text[:DESCRIPTION_LENGTH]


def outcome_unknown(exc: IntacctError) -> bool:
    """Whether a write that failed with ``exc`` may nonetheless have been committed."""
    if isinstance(exc, NOT_SENT):
        return False
    return isinstance(exc, IntacctUnavailable) or exc.status in UNKNOWN_STATUSES or (exc.status or 0) >= 500


def _money(amount: Decimal) -> str:
    return f"{amount:.2f}"


def create_body(post: dict[str, Any], reference: str) -> dict[str, Any]:
    """The create body for a validated ``payment.post`` (amounts as strings, exact), every path from
    the field map: the body is built flat, then nested."""
    flat: dict[str, Any] = {
        Payment.CUSTOMER: post["customerId"],
        Payment.METHOD: PAYMENT_METHODS[post["method"]],
        Payment.RECEIPT_DATE: post["receivedOn"].isoformat(),
        Payment.CURRENCY: post["currency"],
        Payment.AMOUNT_TO_PAY: _money(post["amount"]),
        Payment.REFERENCE: reference,
        Payment.DESCRIPTION: description_for(post["paymentId"], post.get("memo")),
    }
    if post.get("depositBankAccountId"):
        flat[Payment.BANK_ACCOUNT] = post["depositBankAccountId"]
    else:
        flat[Payment.UNDEPOSITED_ACCOUNT] = post["undepositedGLAccountId"]
    body = unflatten(flat)
    body[Payment.DETAILS] = [
        unflatten({PaymentDetail.INVOICE: a["invoiceExternalId"], PaymentDetail.AMOUNT: _money(a["amount"])})
        for a in post["allocations"]
    ]
    return body


def reverse_body(key: str, reversed_on: str, memo: str | None) -> dict[str, Any]:
    """The reverse workflow's body (accounts-receivable.md §3.2: ``key``, ``reversedDate``, ``memo``)."""
    body: dict[str, Any] = {"key": key, "reversedDate": reversed_on}
    if memo:
        body["memo"] = memo
    return body


class PaymentWrites:
    """The write-back's Intacct calls for one connection at a time, all under the company's slots."""

    def __init__(self, client: IntacctClient) -> None:
        self._client = client

    def one_slot(self, connection: IntacctConnection) -> AbstractContextManager[None]:
        """The calls of the ``with`` block (this thread's) go out under one of the company's slots,
        taken by the first and kept for the others: a posting's read and create claim one slot."""
        return self._client.holding(connection)

    def invoices(
        self, connection: IntacctConnection, keys: Iterable[str]
    ) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """The invoices by key, flattened (one batch GET), and the keys Intacct does not have."""
        records, missing = self._client.get_many(connection, INVOICE_PATH, keys)
        return {str(r[Invoice.KEY]): flatten(r) for r in records}, missing

    def create(self, connection: IntacctConnection, body: dict[str, Any], idempotency_key: str) -> str:
        """Create the payment (one attempt, with ``idempotency_key``); its new key."""
        answer = self._client.write_once(
            connection, "POST", f"objects/{PAYMENT_PATH}", PAYMENT_PATH, body, idempotency_key=idempotency_key
        )
        result = answer.get("ia::result")
        key = result.get("key") if isinstance(result, dict) else None
        if key is None:
            # A 2xx we cannot read: the payment may well exist. Unknown, like a lost answer.
            raise IntacctUnavailable(
                f"Intacct answered a create without a key: {answer!r}"[:300], status=None
            )
        return str(key)

    def find_by_reference(self, connection: IntacctConnection, reference: str) -> list[dict[str, Any]]:
        """Every payment carrying ``reference`` (``key`` and ``state``), reversal records left out: the
        way to know whether a create happened."""
        page = self._client.query(
            connection,
            PAYMENT_PATH,
            fields=[Payment.KEY, Payment.STATE, Payment.REFERENCE],
            filters=[{"$eq": {Payment.REFERENCE: reference}}],
            order_by=[{Payment.KEY: "asc"}],
            size=10,
        )
        return [
            row
            for row in page.rows
            if row.get(Payment.REFERENCE, reference) == reference and row.get(Payment.STATE) != REVERSAL_STATE
        ]

    def state_of(self, connection: IntacctConnection, key: str) -> str | None:
        """The payment's state (``complete``, ``reversed``, ...), or None if Intacct has no such payment."""
        record = self._client.get(connection, PAYMENT_PATH, key)
        return None if record is None else flatten(record).get(Payment.STATE)

    def reverse(
        self,
        connection: IntacctConnection,
        key: str,
        reversed_on: str,
        memo: str | None,
        idempotency_key: str,
    ) -> None:
        """Reverse the payment (one attempt, published workflow): it becomes ``reversed`` (a new
        ``reversal`` record mirrors it), its invoices' amounts due rise."""
        self._client.write_once(
            connection,
            "POST",
            REVERSE_PATH,
            PAYMENT_PATH,
            reverse_body(key, reversed_on, memo),
            idempotency_key=idempotency_key,
        )
