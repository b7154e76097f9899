"""AR payments written through the API: the books' rules, the payment record, its reversal.

Each create or reverse is one write transaction (checks, effects and the ``Idempotency-Key``
together), so two payments racing for one invoice cannot both apply to it, and a key is kept only
for a write that committed. Refusals (``details[0].target`` is a slash path; the cause is in
``details[0].additionalInfo.placeholders.REASON``):

- 404 ``notFound``: unknown customer (``/customer/id``), checking account
  (``/financialEntity/entityId``), undeposited GL account (``/undepositedGLAccount/id``), invoice
  (``/paymentDetails/<i>/arInvoice/key``), payment to reverse (``/key``).
- 409 ``conflict``: an ``Idempotency-Key`` already used by this company within its 48 hours.
- 422 ``businessRule``: ``invoiceNotOpen`` (draft, paid, reversed, reversal, noValue),
  ``invoiceCustomerMismatch``, ``currencyMismatch`` (``/txnCurrency/currency``), ``overApplication``
  (more than the invoice's amount due, or details adding up to more than ``amountToPay``),
  ``periodClosed`` (``/paymentSummary/receiptDate`` or ``/reversedDate`` on or before the company's
  ``booksClosedThrough``), ``alreadyReversed``, ``paymentNotComplete``, ``invalidDate``.

A reversal (``POST /workflows/accounts-receivable/payment/reverse``) leaves the original
``reversed`` and adds a new record in state ``reversal`` (Sage's example answers its key), carrying
the original's customer, currency and ``referenceNumber`` (a convention: Sage does not say) and the
negated total, dated ``reversedDate``; both fire ARPYMT.
"""

# Table and column names in SQL text come from objects.py, never from a request; values are bound.
# ruff: noqa: S608

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from .companies import Company
from .errors import IntacctError
from .objects import OBJECT_TYPES, ObjectType
from .payment_requests import Application, PaymentRequest, ReverseRequest, refusal
from .records import PAID_STATES, RecordService, money
from .store import Store, indexed

PAYMENT = OBJECT_TYPES["accounts-receivable/payment"]
_INVOICE = OBJECT_TYPES["accounts-receivable/invoice"]
_CUSTOMER = OBJECT_TYPES["accounts-receivable/customer"]
_CHECKING = OBJECT_TYPES["cash-management/checking-account"]
_GL_ACCOUNT = OBJECT_TYPES["general-ledger/account"]
# Open invoices (intacct-rest.md): a payment can apply to these.
_APPLICABLE_STATES = ("posted", "partiallyPaid", "selected")
IDEMPOTENCY_HOURS = 48


def _not_found(what: str, record_id: Any, target: str) -> Exception:
    return refusal(404, "notFound", f"{what} '{record_id}' does not exist", target)


def _rule(message: str, target: str | None, reason: str) -> Exception:
    return refusal(422, "businessRule", message, target, reason)


def _record_of(conn: sqlite3.Connection, obj: ObjectType, company_id: str, record_id: str) -> Any:
    return conn.execute(
        f"SELECT key, {obj.by_name['name'].column if 'name' in obj.by_name else 'NULL'} "
        f"FROM {indexed(obj, 'id')} WHERE company_id = ? AND id = ?",
        (company_id, record_id),
    ).fetchone()


class PaymentService:
    """Creates and reverses payments for the API, through the record service's effects."""

    def __init__(
        self,
        store: Store,
        records: RecordService,
        *,
        clock: Callable[[], float] = time.time,
        time_scale: float = 1.0,
    ) -> None:
        self._store = store
        self._records = records
        self._clock = clock
        self._key_seconds = IDEMPOTENCY_HOURS * 3600 * time_scale

    def create(self, company: Company, request: PaymentRequest, idempotency_key: str | None = None) -> int:
        """Check the request against the books, store the payment, fire ARPYMT; its key."""
        company_id = company.company_id
        with self._store.write() as conn:
            self._claim(conn, company_id, idempotency_key, "create")
            customer = self._check_create(conn, company, request)
            key, changes = self._records.insert_in(conn, company_id, PAYMENT, _payload(request, customer))
        self._records.publish(changes)
        return key

    def reverse(self, company: Company, request: ReverseRequest, idempotency_key: str | None = None) -> int:
        """Reverse a complete payment: the original ``reversed``, a new ``reversal`` record (its
        key is returned), invoices' amounts due rise again; both fire ARPYMT."""
        company_id = company.company_id
        with self._store.write() as conn:
            self._claim(conn, company_id, idempotency_key, "reverse")
            payment = self._store.fetch(conn, PAYMENT, company_id, request.key)
            if payment is None:
                raise _not_found("Payment", request.key, "/key")
            if payment["state"] in ("reversed", "reversal"):
                raise _rule(f"Payment {request.key} is already {payment['state']}", "/key", "alreadyReversed")
            if payment["state"] not in PAID_STATES:
                raise _rule(
                    f"Payment {request.key} is {payment['state']}; only a complete payment can be reversed",
                    "/key",
                    "paymentNotComplete",
                )
            reversed_on = request.reversed_date.isoformat()
            received = payment["paymentSummary.receiptDate"]
            if received and reversed_on < received:
                raise _rule(
                    "reversedDate is before the payment's receipt date", "/reversedDate", "invalidDate"
                )
            _check_period(company, reversed_on, "/reversedDate")
            changes = self._records.set_in(conn, company_id, PAYMENT, request.key, {"state": "reversed"})
            key, added = self._records.insert_in(conn, company_id, PAYMENT, _reversal(payment, request))
        self._records.publish(changes + added)
        return key

    def by_reference(self, company_id: str, reference_number: str | None) -> list[dict[str, Any]]:
        """Payments (with their details) carrying a reference, or all of them; straight from the store."""
        sql = f"SELECT key FROM {PAYMENT.table} WHERE company_id = ?"
        params: tuple[Any, ...] = (company_id,)
        if reference_number is not None:
            sql, params = sql + " AND referenceNumber = ?", (*params, reference_number)
        with self._store.read() as conn:
            keys = [row[0] for row in conn.execute(sql + " ORDER BY key", params)]
        return [self._records.get(company_id, PAYMENT, key) for key in keys]

    # -- idempotency ------------------------------------------------------------------------

    def _claim(self, conn: sqlite3.Connection, company_id: str, key: str | None, operation: str) -> None:
        """Keep ``key`` for 48 hours (time-scaled) with this write; a key seen before is a 409."""
        if not key:
            return
        now = self._clock()
        conn.execute("DELETE FROM idempotency_keys WHERE expires_at <= ?", (now,))
        row = conn.execute(
            "SELECT operation FROM idempotency_keys WHERE company_id = ? AND idempotency_key = ?",
            (company_id, key),
        ).fetchone()
        if row is not None:
            raise IntacctError(
                409,
                "conflict",
                f"Idempotency-Key '{key}' was already used by a {row[0]} request",
                details=[
                    {
                        "code": "conflict",
                        "message": "Two requests from the same user have the same idempotency key",
                        "errorId": "REST-1009",
                        "target": None,
                        "additionalInfo": {
                            "messageId": "IA.DUPLICATE_IDEMPOTENCY_KEY",
                            "placeholders": {"KEY": key},
                            "propertySet": {},
                        },
                    }
                ],
            )
        conn.execute(
            "INSERT INTO idempotency_keys (company_id, idempotency_key, operation, expires_at) VALUES (?, ?, ?, ?)",
            (company_id, key, operation, now + self._key_seconds),
        )

    # -- rules ------------------------------------------------------------------------------

    def _check_create(self, conn: sqlite3.Connection, company: Company, request: PaymentRequest) -> Any:
        company_id = company.company_id
        customer = None
        if request.customer_id is not None:
            customer = _record_of(conn, _CUSTOMER, company_id, request.customer_id)
            if customer is None:
                raise _not_found("Customer", request.customer_id, "/customer/id")
        if request.bank_account_id is not None:
            if _record_of(conn, _CHECKING, company_id, request.bank_account_id) is None:
                raise _not_found("Checking account", request.bank_account_id, "/financialEntity/entityId")
        elif _record_of(conn, _GL_ACCOUNT, company_id, request.undeposited_account_id or "") is None:
            raise _not_found("GL account", request.undeposited_account_id, "/undepositedGLAccount/id")
        _check_period(company, request.receipt_date.isoformat(), "/paymentSummary/receiptDate")
        for application in request.applications:
            self._check_application(conn, company_id, request, application)
        if request.applied > request.amount:
            raise _rule(
                f"The details apply {request.applied} but amountToPay is {request.amount}",
                "/txnCurrency/amountToPay",
                "overApplication",
            )
        return customer

    def _check_application(
        self, conn: sqlite3.Connection, company_id: str, request: PaymentRequest, application: Application
    ) -> None:
        key = application.invoice_key
        target = f"{application.target}/arInvoice/key"
        invoice = self._store.fetch(conn, _INVOICE, company_id, key)
        if invoice is None:
            raise _not_found("Invoice", key, target)
        if request.customer_id is not None and invoice["customer.id"] != request.customer_id:
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
                "/txnCurrency/currency",
                "currencyMismatch",
            )
        due = Decimal(invoice["totalTxnAmountDue"] or 0)
        if application.amount > due:
            raise _rule(
                f"{application.amount} is more than invoice {key}'s amount due of {money(due)}",
                f"{application.target}/txnCurrency/paymentAmount",
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


def _payload(request: PaymentRequest, customer: Any) -> dict[str, Any]:
    """The stored record, in the published shape (overPaymentAmount: write-only, kept, never served)."""
    over = request.amount - request.applied
    received = request.receipt_date.isoformat()
    return {
        "customer": {
            "id": request.customer_id,
            "key": str(customer[0]) if customer else None,
            "name": customer[1] if customer else None,
        },
        "payerName": request.payer_name,
        "paymentMethod": request.method,
        "documentNumber": request.document_number,
        "paymentSummary": {"receiptDate": received},
        "state": "complete",
        "financialEntity": {
            "entityId": request.bank_account_id,
            "entityType": "ba" if request.bank_account_id else None,
        },
        "undepositedGLAccount": {"id": request.undeposited_account_id},
        "txnCurrency": {
            "currency": request.currency,
            "amountToPay": money(request.amount_to_pay) if request.amount_to_pay is not None else None,
            "totalAmount": money(request.amount),
            "totalPaid": money(request.applied),
            "totalDue": money(over),
        },
        "description": request.description,
        "referenceNumber": request.reference_number,
        "overPaymentAmount": money(over) if over > 0 else None,
        "paymentDetails": [
            {
                "arInvoice": {"key": a.invoice_key},
                "txnCurrency": {"paymentAmount": money(a.amount), "currency": request.currency},
                "paymentDate": received,
            }
            for a in request.applications
        ],
    }


def _reversal(original: dict[str, Any], request: ReverseRequest) -> dict[str, Any]:
    """The new ``reversal`` record: the original's parties and reference, the total negated."""

    def negated(name: str) -> str | None:
        value = original.get(name)
        return money(-Decimal(value)) if value is not None else None

    copied = {
        name: original.get(name)
        for name in (
            "customer.id",
            "customer.key",
            "customer.name",
            "payerName",
            "paymentMethod",
            "documentNumber",
            "financialEntity.entityId",
            "financialEntity.entityType",
            "undepositedGLAccount.id",
            "txnCurrency.currency",
            "referenceNumber",
        )
    }
    return {
        **copied,
        "state": "reversal",
        "paymentSummary.receiptDate": request.reversed_date.isoformat(),
        "txnCurrency.totalAmount": negated("txnCurrency.totalAmount"),
        "txnCurrency.totalPaid": negated("txnCurrency.totalPaid"),
        "description": request.memo if request.memo is not None else original.get("description"),
    }


def result_body(key: int, state: str | None = None) -> str:
    """The 201/200 answer: ``{"ia::result": {"key", "id", "href"[, "state"]}, "ia::meta"}``."""
    result: dict[str, Any] = {"key": str(key), "id": str(key), "href": f"/objects/{PAYMENT.path}/{key}"}
    if state is not None:
        result["state"] = state
    return json.dumps(
        {"ia::result": result, "ia::meta": {"totalCount": 1, "totalSuccess": 1, "totalError": 0}}
    )
