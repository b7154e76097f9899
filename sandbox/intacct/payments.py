"""AR payments written through the API: the books' rules, the payment record, its reversal.

Each create or reverse is one write transaction (checks and effects together), so two payments
racing for one invoice cannot both apply to it. Refusals (``details[0].code`` is the precise cause):

- 404 ``notFound``: unknown customer (target ``customer.id``), checking account
  (``financialEntity.entityId``), undeposited GL account (``undepositedGLAccount.id``), invoice
  (``paymentDetails[i].arInvoice.key``), payment to reverse (``key``).
- 422 ``businessRule``: ``invoiceNotOpen`` (draft, paid, reversed), ``invoiceCustomerMismatch``,
  ``currencyMismatch`` (``txnCurrency.currency``), ``overApplication`` (more than the invoice's
  amount due, or details adding up to more than ``amountToPay``), ``periodClosed`` (``receiptDate``
  or ``reversedDate`` on or before the company's ``booksClosedThrough``), ``alreadyReversed``,
  ``paymentNotComplete``.

The stored record uses the simulator's payment fields: ``txnCurrency.currency`` ->
``currency.txnCurrency``, ``amountToPay`` -> ``totalTxnAmount``, each detail's ``paymentAmount`` ->
``details[].txnAmount``; plus ``referenceNumber``, ``undepositedGLAccount.id``,
``overPaymentAmount`` (null when all is applied), ``reversedDate`` and ``reversalMemo``.
"""

# Table and column names in SQL text come from objects.py, never from a request; values are bound.
# ruff: noqa: S608

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from typing import Any

from .companies import Company
from .objects import OBJECT_TYPES, ObjectType
from .payment_requests import Application, PaymentRequest, ReverseRequest, refusal
from .records import RecordService, money
from .store import Store

PAYMENT = OBJECT_TYPES["accounts-receivable/payment"]
_INVOICE = OBJECT_TYPES["accounts-receivable/invoice"]
_CUSTOMER = OBJECT_TYPES["accounts-receivable/customer"]
_CHECKING = OBJECT_TYPES["cash-management/checking-account"]
_GL_ACCOUNT = OBJECT_TYPES["general-ledger/account"]
_APPLICABLE_STATES = ("posted", "partiallyPaid")


def _not_found(what: str, record_id: Any, target: str) -> Exception:
    return refusal(404, "notFound", f"{what} '{record_id}' does not exist", target)


def _rule(message: str, target: str | None, reason: str) -> Exception:
    return refusal(422, "businessRule", message, target, reason)


def _key_of(conn: sqlite3.Connection, obj: ObjectType, company_id: str, record_id: str) -> int | None:
    row = conn.execute(
        f"SELECT key FROM {obj.table} WHERE company_id = ? AND id = ?", (company_id, record_id)
    ).fetchone()
    return row[0] if row else None


class PaymentService:
    """Creates and reverses payments for the API, through the record service's effects."""

    def __init__(self, store: Store, records: RecordService) -> None:
        self._store = store
        self._records = records

    def create(self, company: Company, request: PaymentRequest) -> int:
        """Check the request against the books, store the payment, fire ARPYMT; its key."""
        company_id = company.company_id
        with self._store.write() as conn:
            self._check_create(conn, company, request)
            key, changes = self._records.insert_in(conn, company_id, PAYMENT, _payload(request))
        self._records.publish(changes)
        return key

    def reverse(self, company: Company, request: ReverseRequest) -> int:
        """Mark a complete payment reversed (its invoices' amounts due rise again), fire ARPYMT."""
        company_id = company.company_id
        with self._store.write() as conn:
            payment = self._store.fetch(conn, PAYMENT, company_id, request.key)
            if payment is None:
                raise _not_found("Payment", request.key, "key")
            if payment["state"] == "reversed":
                raise _rule(f"Payment {request.key} is already reversed", "key", "alreadyReversed")
            if payment["state"] != "complete":
                raise _rule(
                    f"Payment {request.key} is {payment['state']}; only a complete payment can be reversed",
                    "key",
                    "paymentNotComplete",
                )
            reversed_on = request.reversed_date.isoformat()
            if payment["receiptDate"] and reversed_on < payment["receiptDate"]:
                raise _rule(
                    "reversedDate is before the payment's receipt date", "reversedDate", "invalidDate"
                )
            _check_period(company, reversed_on, "reversedDate")
            changes = self._records.set_in(
                conn,
                company_id,
                PAYMENT,
                request.key,
                {"state": "reversed", "reversedDate": reversed_on, "reversalMemo": request.memo},
            )
        self._records.publish(changes)
        return request.key

    def by_reference(self, company_id: str, reference_number: str | None) -> list[dict[str, Any]]:
        """Payments (with their details) carrying a reference, or all of them; straight from the store."""
        sql = f"SELECT key FROM {PAYMENT.table} WHERE company_id = ?"
        params: tuple[Any, ...] = (company_id,)
        if reference_number is not None:
            sql, params = sql + " AND referenceNumber = ?", (*params, reference_number)
        with self._store.read() as conn:
            keys = [row[0] for row in conn.execute(sql + " ORDER BY key", params)]
        return [self._records.get(company_id, PAYMENT, key) for key in keys]

    # -- rules ------------------------------------------------------------------------------

    def _check_create(self, conn: sqlite3.Connection, company: Company, request: PaymentRequest) -> None:
        company_id = company.company_id
        if _key_of(conn, _CUSTOMER, company_id, request.customer_id) is None:
            raise _not_found("Customer", request.customer_id, "customer.id")
        if request.bank_account_id is not None:
            if _key_of(conn, _CHECKING, company_id, request.bank_account_id) is None:
                raise _not_found("Checking account", request.bank_account_id, "financialEntity.entityId")
        elif _key_of(conn, _GL_ACCOUNT, company_id, request.undeposited_account_id or "") is None:
            raise _not_found("GL account", request.undeposited_account_id, "undepositedGLAccount.id")
        _check_period(company, request.receipt_date.isoformat(), "receiptDate")
        for application in request.applications:
            self._check_application(conn, company_id, request, application)
        if request.applied > request.amount:
            raise _rule(
                f"The details apply {request.applied} but amountToPay is {request.amount}",
                "txnCurrency.amountToPay",
                "overApplication",
            )

    def _check_application(
        self, conn: sqlite3.Connection, company_id: str, request: PaymentRequest, application: Application
    ) -> None:
        key = application.invoice_key
        target = f"{application.target}.arInvoice.key"
        invoice = self._store.fetch(conn, _INVOICE, company_id, key)
        if invoice is None:
            raise _not_found("Invoice", key, target)
        if invoice["customer.id"] != request.customer_id:
            raise _rule(
                f"Invoice {key} belongs to customer {invoice['customer.id']}",
                target,
                "invoiceCustomerMismatch",
            )
        if invoice["state"] not in _APPLICABLE_STATES:
            raise _rule(f"Invoice {key} is {invoice['state']}, not open", target, "invoiceNotOpen")
        if invoice["currency.txnCurrency"] != request.currency:
            raise _rule(
                f"Invoice {key} is in {invoice['currency.txnCurrency']}, the payment in {request.currency}",
                "txnCurrency.currency",
                "currencyMismatch",
            )
        due = Decimal(invoice["totalTxnAmountDue"] or 0)
        if application.amount > due:
            raise _rule(
                f"{application.amount} is more than invoice {key}'s amount due of {money(due)}",
                f"{application.target}.txnCurrency.paymentAmount",
                "overApplication",
            )


def _check_period(company: Company, day: str, target: str) -> None:
    closed = company.books_closed_through
    if closed is not None and day <= closed:
        raise _rule(
            f"The books are closed through {closed}; {target} {day} is in a closed period",
            target,
            "periodClosed",
        )


def _payload(request: PaymentRequest) -> dict[str, Any]:
    over = request.amount - request.applied
    return {
        "customer": {"id": request.customer_id},
        "paymentMethod": request.method,
        "receiptDate": request.receipt_date.isoformat(),
        "totalTxnAmount": money(request.amount),
        "state": "complete",
        "financialEntity": {"entityId": request.bank_account_id},
        "undepositedGLAccount": {"id": request.undeposited_account_id},
        "currency": {"txnCurrency": request.currency},
        "description": request.description,
        "referenceNumber": request.reference_number,
        "overPaymentAmount": money(over) if over > 0 else None,
        "details": [
            {"invoice": {"key": a.invoice_key}, "txnAmount": money(a.amount)} for a in request.applications
        ],
    }


def result_body(key: int) -> str:
    """The 201/200 answer: ``{"ia::result": {"key", "id", "href"}}``."""
    return json.dumps(
        {
            "ia::result": {"key": str(key), "id": str(key), "href": f"/objects/{PAYMENT.path}/{key}"},
            "ia::meta": {"totalCount": 1, "totalSuccess": 1, "totalError": 0},
        }
    )
