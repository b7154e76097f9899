"""The bodies of the payment write-back's two calls, checked for shape: 400 ``invalidRequest``.

Create (``POST /objects/accounts-receivable/payment``, intacct-rest.md "Writing payments")::

    {"customer": {"id"}, "paymentMethod", "receiptDate",
     "financialEntity": {"entityId"} | "undepositedGLAccount": {"id"},
     "txnCurrency": {"currency", "amountToPay"}, "referenceNumber", "description",
     "paymentDetails": [{"arInvoice": {"key"}, "txnCurrency": {"paymentAmount"}}]}

Reverse (``POST /workflows/accounts-receivable/payment/reverse``): ``{"key", "reversedDate", "memo"}``.
Each refusal's ``details[0].target`` names the field, e.g. ``paymentDetails[1].arInvoice.key``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from .errors import IntacctError

PAYMENT_METHODS = ("printedCheck", "creditCard", "eft", "cash", "onlineChargeCard", "onlineAchDebit")
_MONEY = re.compile(r"^[0-9]{1,13}(\.[0-9]{1,2})?$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_CREATE_FIELDS = {
    "customer",
    "paymentMethod",
    "receiptDate",
    "financialEntity",
    "undepositedGLAccount",
    "txnCurrency",
    "referenceNumber",
    "description",
    "paymentDetails",
}
_MAX_TEXT = 1000


def refusal(
    status: int, code: str, message: str, target: str | None, reason: str | None = None
) -> IntacctError:
    """An ``ia::error`` whose one detail names the field (``target``) and a precise ``code``."""
    detail = {"code": reason or code, "message": message, "target": target}
    return IntacctError(status, code, message, details=[detail])


def _invalid(message: str, target: str | None) -> IntacctError:
    return refusal(400, "invalidRequest", message, target)


@dataclass(frozen=True)
class Application:
    """One payment detail: how much of the payment goes to one invoice."""

    invoice_key: int
    amount: Decimal
    target: str  # e.g. "paymentDetails[0]"


@dataclass(frozen=True)
class PaymentRequest:
    """A create body that has the right shape (business rules are checked against the books)."""

    customer_id: str
    method: str
    receipt_date: date
    bank_account_id: str | None
    undeposited_account_id: str | None
    currency: str
    amount: Decimal
    reference_number: str | None
    description: str | None
    applications: tuple[Application, ...]

    @property
    def applied(self) -> Decimal:
        return sum((a.amount for a in self.applications), Decimal("0"))


@dataclass(frozen=True)
class ReverseRequest:
    """A reverse body: the payment's key, the reversal date and a memo."""

    key: int
    reversed_date: date
    memo: str | None


def _object(body: Any, target: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _invalid(f"'{target}' must be an object", target)
    return body


def _text(value: Any, target: str, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_TEXT:
        raise _invalid(f"'{target}' must be a non-empty string", target)
    return value


def _date(value: Any, target: str) -> date:
    if isinstance(value, str) and len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise _invalid(f"'{target}' must be a date (YYYY-MM-DD)", target)


def _money(value: Any, target: str) -> Decimal:
    # A JSON number is read through its text, so 100.10 stays exact.
    text = str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not _MONEY.match(text) or Decimal(text) <= 0:
        raise _invalid(f"'{target}' must be a positive amount with at most 2 decimals", target)
    return Decimal(text)


def _key(value: Any, target: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and value.isdigit() and int(value) > 0:
        return int(value)
    raise _invalid(f"'{target}' must be a record key", target)


def parse_create(body: Any) -> PaymentRequest:
    """A create body, or 400 naming the first field that is wrong."""
    body = _object(body, "body")
    unknown = sorted(set(body) - _CREATE_FIELDS)
    if unknown:
        raise _invalid(f"Unknown field '{unknown[0]}' for accounts-receivable/payment", unknown[0])
    customer = _object(body.get("customer"), "customer")
    method = body.get("paymentMethod")
    if method not in PAYMENT_METHODS:
        raise _invalid(f"'paymentMethod' must be one of {', '.join(PAYMENT_METHODS)}", "paymentMethod")
    bank = body.get("financialEntity")
    undeposited = body.get("undepositedGLAccount")
    if (bank is None) == (undeposited is None):
        raise _invalid(
            "Give exactly one of 'financialEntity' (a checking account) and 'undepositedGLAccount'",
            "financialEntity",
        )
    bank_id = (
        _text(_object(bank, "financialEntity").get("entityId"), "financialEntity.entityId") if bank else None
    )
    undeposited_id = (
        _text(_object(undeposited, "undepositedGLAccount").get("id"), "undepositedGLAccount.id")
        if undeposited
        else None
    )
    txn = _object(body.get("txnCurrency"), "txnCurrency")
    currency = txn.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise _invalid("'txnCurrency.currency' must be a 3-letter currency code", "txnCurrency.currency")
    details = body.get("paymentDetails", [])
    if not isinstance(details, list):
        raise _invalid("'paymentDetails' must be a list", "paymentDetails")
    applications, seen = [], set()
    for number, detail in enumerate(details):
        where = f"paymentDetails[{number}]"
        detail = _object(detail, where)
        invoice = _object(detail.get("arInvoice"), f"{where}.arInvoice")
        key = _key(invoice.get("key"), f"{where}.arInvoice.key")
        if key in seen:
            raise _invalid(f"Invoice {key} is applied twice", f"{where}.arInvoice.key")
        seen.add(key)
        amount = _object(detail.get("txnCurrency"), f"{where}.txnCurrency").get("paymentAmount")
        applications.append(Application(key, _money(amount, f"{where}.txnCurrency.paymentAmount"), where))
    return PaymentRequest(
        customer_id=_text(customer.get("id"), "customer.id"),
        method=method,
        receipt_date=_date(body.get("receiptDate"), "receiptDate"),
        bank_account_id=bank_id,
        undeposited_account_id=undeposited_id,
        currency=currency,
        amount=_money(txn.get("amountToPay"), "txnCurrency.amountToPay"),
        reference_number=_text(body.get("referenceNumber"), "referenceNumber", required=False),
        description=_text(body.get("description"), "description", required=False),
        applications=tuple(applications),
    )


def parse_reverse(body: Any) -> ReverseRequest:
    """A reverse body, or 400 naming the field that is wrong."""
    body = _object(body, "body")
    unknown = sorted(set(body) - {"key", "reversedDate", "memo"})
    if unknown:
        raise _invalid(f"Unknown field '{unknown[0]}' for the reverse action", unknown[0])
    return ReverseRequest(
        key=_key(body.get("key"), "key"),
        reversed_date=_date(body.get("reversedDate"), "reversedDate"),
        memo=_text(body.get("memo"), "memo", required=False),
    )
