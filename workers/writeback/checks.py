"""What Intacct would refuse, found before the create from one batch GET of the invoices applied to.

Refusing here gives the customer a precise reason (the invoice, its state, its amount due) and
keeps a doomed create from costing a write; Intacct's own checks still stand behind these.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from clients.intacct.payments import (
    INVOICE_AMOUNT_DUE,
    INVOICE_CURRENCY,
    INVOICE_STATE,
    OPEN_INVOICE_STATES,
)
from workers.writeback import reasons
from workers.writeback.messages import allocated
from workers.writeback.reasons import PostingRefusal


def over_allocated(post: dict[str, Any]) -> PostingRefusal | None:
    """Allocations adding up to more than the payment's amount (no Intacct call needed)."""
    total = allocated(post)
    if total > post["amount"]:
        return reasons.over_application(
            f"The amounts applied to invoices ({total:.2f}) exceed the payment ({post['amount']:.2f})"
        )
    return None


def refusal(
    post: dict[str, Any], invoices: dict[str, dict[str, Any]], missing: list[str]
) -> PostingRefusal | None:
    """The first allocation Intacct would refuse, in the message's order, or None.

    An invoice of another customer is left to Intacct: it tells an unknown customer (the likelier
    mistake) from a wrong invoice, which the invoice alone cannot.
    """
    for allocation in post["allocations"]:
        key = allocation["invoiceExternalId"]
        invoice = invoices.get(key)
        if invoice is None or key in missing:
            return reasons.invoice_not_found(key)
        state = invoice.get(INVOICE_STATE)
        if state not in OPEN_INVOICE_STATES:
            return reasons.invoice_not_open(key, state)
        currency = invoice.get(INVOICE_CURRENCY)
        if currency is not None and currency != post["currency"]:
            return reasons.currency_mismatch(key, currency, post["currency"])
        due = _amount(invoice.get(INVOICE_AMOUNT_DUE))
        if due is not None and allocation["amount"] > due:
            return reasons.over_application(
                f"{allocation['amount']:.2f} is applied to invoice {key}, whose amount due is {due:.2f}"
            )
    return None


def _amount(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value is not None else None
    except InvalidOperation:
        return None
