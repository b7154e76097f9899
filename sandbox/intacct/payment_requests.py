"""The bodies of the payment write-back's two calls: checked against the published schema (400).

Create (``POST /objects/accounts-receivable/payment``, intacct-rest.md "Writing payments")::

    {"customer": {"id"} | "payerName", "paymentMethod", "paymentSummary": {"receiptDate"},
     "financialEntity": {"entityId"} | "undepositedGLAccount": {"id"},
     "txnCurrency": {"currency", "amountToPay"}, "referenceNumber", "description",
     "paymentDetails": [{"arInvoice": {"key"}, "txnCurrency": {"paymentAmount"}}]}

Reverse (``POST /workflows/accounts-receivable/payment/reverse``): ``{"key", "reversedDate", "memo"}``.
Every field, type, enum, maxLength and required property comes from :mod:`schema`; each refusal's
``details[].target`` is a slash path such as ``/paymentDetails/0/arInvoice/key``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import IntacctError, detail, invalid_payload, slash_path
from .schema import SCHEMAS, WORKFLOWS
from .store import MAX_KEY
from .validation import validate

_PAYMENT = SCHEMAS["accounts-receivable/payment"]
_REVERSE = WORKFLOWS["accounts-receivable/payment/reverse"]


def refusal(
    status: int, code: str, message: str, target: str | None, reason: str | None = None
) -> IntacctError:
    """An ``ia::error`` whose one detail names the field (a slash-path ``target``) and the cause."""
    entry = detail(code, message, target)
    if reason:
        entry["additionalInfo"]["messageId"] = f"IA.{reason.upper()}"
        entry["additionalInfo"]["placeholders"]["REASON"] = reason
    return IntacctError(status, code, message, details=[entry])


@dataclass(frozen=True)
class Application:
    """One payment detail: how much of the payment goes to one invoice."""

    invoice_key: int
    amount: Decimal
    target: str  # e.g. "/paymentDetails/0"


@dataclass(frozen=True)
class PaymentRequest:
    """A create body that fits the schema (business rules are checked against the books)."""

    customer_id: str | None
    payer_name: str | None
    method: str | None
    receipt_date: date
    bank_account_id: str | None
    undeposited_account_id: str | None
    currency: str
    amount_to_pay: Decimal | None
    reference_number: str | None
    description: str | None
    document_number: str | None
    applications: tuple[Application, ...]

    @property
    def applied(self) -> Decimal:
        return sum((a.amount for a in self.applications), Decimal("0"))

    @property
    def amount(self) -> Decimal:
        """The payment's total: ``amountToPay`` when given, else what the details apply."""
        return self.amount_to_pay if self.amount_to_pay is not None else self.applied


@dataclass(frozen=True)
class ReverseRequest:
    """A reverse body: the payment's key, the reversal date and a memo."""

    key: int
    reversed_date: date
    memo: str | None


def _bad(message: str, path: str) -> IntacctError:
    return invalid_payload([detail("invalidRequest", message, slash_path(path), "invalidValue")])


# Sage publishes amounts as two-decimal strings with no largest value; the simulator refuses one
# it cannot hold exactly (Python's default 28 significant digits) rather than failing on it.
MAX_AMOUNT_DIGITS = 26


def _key(value: Any, path: str) -> int:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if isinstance(text, str) and text.isdigit() and 0 < int(text) <= MAX_KEY:
        return int(text)
    raise _bad(f"{slash_path(path)} must be a record key", path)


def _positive(value: Any, path: str) -> Decimal:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise _bad(f"{slash_path(path)} must be an amount", path) from None
    if not amount.is_finite() or amount.adjusted() >= MAX_AMOUNT_DIGITS:
        raise _bad(f"{slash_path(path)} is larger than any amount a ledger holds", path)
    if amount <= 0:
        raise _bad(f"{slash_path(path)} must be more than zero", path)
    return amount


def _get(body: dict[str, Any], dotted: str) -> Any:
    node: Any = body
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def parse_create(body: Any) -> PaymentRequest:
    """A create body, or 400 naming every field that is wrong."""
    body = validate(_PAYMENT, body)
    applications, seen = [], set()
    for position, item in enumerate(body.get("paymentDetails") or []):
        at = f"paymentDetails[{position}]"
        key = _key(_get(item, "arInvoice.key"), f"{at}.arInvoice.key")
        if key in seen:
            raise _bad(f"Invoice {key} is applied twice", f"{at}.arInvoice.key")
        seen.add(key)
        amount = _positive(_get(item, "txnCurrency.paymentAmount"), f"{at}.txnCurrency.paymentAmount")
        applications.append(Application(key, amount, slash_path(at)))
    to_pay = _get(body, "txnCurrency.amountToPay")
    return PaymentRequest(
        customer_id=_get(body, "customer.id"),
        payer_name=body.get("payerName"),
        method=body.get("paymentMethod"),
        receipt_date=date.fromisoformat(_get(body, "paymentSummary.receiptDate")),
        bank_account_id=_get(body, "financialEntity.entityId"),
        undeposited_account_id=_get(body, "undepositedGLAccount.id"),
        currency=_get(body, "txnCurrency.currency"),
        amount_to_pay=_positive(to_pay, "txnCurrency.amountToPay") if to_pay is not None else None,
        reference_number=body.get("referenceNumber"),
        description=body.get("description"),
        document_number=body.get("documentNumber"),
        applications=tuple(applications),
    )


def parse_reverse(body: Any) -> ReverseRequest:
    """A reverse body (``accounts-receivable-payment-actions-reverse-request``), or 400."""
    body = validate(_REVERSE, body)
    return ReverseRequest(
        key=_key(body["key"], "key"),
        reversed_date=date.fromisoformat(body["reversedDate"]),
        memo=body.get("memo"),
    )
