"""Intacct's AR payment writes (intacct-rest.md "Writing payments"): create, find by reference, reverse.

Field names of ``accounts-receivable/payment`` live here alone (to check against the live API
before production). Reads go through the client's retrying calls; the create and the reverse
are sent once (``IntacctClient.write_once``): a lost answer is resolved by the caller, by looking.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from clients.intacct.client import IntacctClient
from clients.intacct.tokens import IntacctConnection
from schemas.mappings.records import flatten

PAYMENT_PATH = "accounts-receivable/payment"
INVOICE_PATH = "accounts-receivable/invoice"
REVERSE_PATH = "workflows/accounts-receivable/payment/reverse"
# BRIEF.md: FlexPoint's method -> Intacct's paymentMethod.
PAYMENT_METHODS = {"ach": "eft", "card": "creditCard", "check": "printedCheck", "wire": "eft", "cash": "cash"}
# The flat invoice fields the pre-checks read from a batch GET.
INVOICE_STATE = "state"
INVOICE_CURRENCY = "currency.txnCurrency"
INVOICE_AMOUNT_DUE = "totalTxnAmountDue"
INVOICE_CUSTOMER = "customer.id"
# Intacct invoice states a payment may be applied to.
OPEN_INVOICE_STATES = frozenset({"posted", "partiallyPaid"})
REVERSED_PAYMENT_STATES = frozenset({"reversed", "voided"})


def _money(amount: Decimal) -> str:
    return f"{amount:.2f}"


def create_body(post: dict[str, Any], reference: str) -> dict[str, Any]:
    """The create body for a validated ``payment.post`` (amounts as strings, exact)."""
    body: dict[str, Any] = {
        "customer": {"id": post["customerId"]},
        "paymentMethod": PAYMENT_METHODS[post["method"]],
        "receiptDate": post["receivedOn"].isoformat(),
        "txnCurrency": {"currency": post["currency"], "amountToPay": _money(post["amount"])},
        "referenceNumber": reference,
        "paymentDetails": [
            {
                "arInvoice": {"key": a["invoiceExternalId"]},
                "txnCurrency": {"paymentAmount": _money(a["amount"])},
            }
            for a in post["allocations"]
        ],
    }
    if post.get("depositBankAccountId"):
        body["financialEntity"] = {"entityId": post["depositBankAccountId"]}
    else:
        body["undepositedGLAccount"] = {"id": post["undepositedGLAccountId"]}
    if post.get("memo"):
        body["description"] = post["memo"]
    return body


class PaymentWrites:
    """The write-back's Intacct calls for one connection at a time, all under the company's slots."""

    def __init__(self, client: IntacctClient) -> None:
        self._client = client

    def invoices(
        self, connection: IntacctConnection, keys: Iterable[str]
    ) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """The invoices by key, flattened (one batch GET), and the keys Intacct does not have."""
        records, missing = self._client.get_many(connection, INVOICE_PATH, keys)
        return {str(r["key"]): flatten(r) for r in records}, missing

    def create(self, connection: IntacctConnection, body: dict[str, Any]) -> str:
        """Create the payment (one attempt); its new key."""
        answer = self._client.write_once(connection, "POST", f"objects/{PAYMENT_PATH}", PAYMENT_PATH, body)
        result = answer.get("ia::result")
        key = result.get("key") if isinstance(result, dict) else None
        if key is None:
            raise ValueError(f"Intacct created a payment but answered no key: {answer!r}"[:300])
        return str(key)

    def find_by_reference(self, connection: IntacctConnection, reference: str) -> list[dict[str, Any]]:
        """Every payment carrying ``reference`` (``key`` and ``state``): the way to know whether a create happened."""
        page = self._client.query(
            connection,
            PAYMENT_PATH,
            fields=["key", "state", "referenceNumber"],
            filters=[{"$eq": {"referenceNumber": reference}}],
            order_by=[{"key": "asc"}],
            size=10,
        )
        return [row for row in page.rows if row.get("referenceNumber", reference) == reference]

    def state_of(self, connection: IntacctConnection, key: str) -> str | None:
        """The payment's state (``complete``, ``reversed``, ...), or None if Intacct has no such payment."""
        record = self._client.get(connection, PAYMENT_PATH, key)
        return None if record is None else flatten(record).get("state")

    def reverse(self, connection: IntacctConnection, key: str, reversed_on: str, memo: str | None) -> None:
        """Reverse the payment (one attempt): its state becomes ``reversed``, its invoices' amounts due rise."""
        body: dict[str, Any] = {"key": key, "reversedDate": reversed_on}
        if memo:
            body["memo"] = memo
        self._client.write_once(connection, "POST", REVERSE_PATH, PAYMENT_PATH, body)
