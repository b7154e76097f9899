"""Accounts Receivable: customers, invoices (with lines), payments (with details), adjustments.

Field paths come from :mod:`schemas.intacct_fields`; states follow intacct-rest.md's table
("What FlexPoint receives, from which published field").
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from marshmallow import post_load, pre_load

from ..intacct_fields import Adjustment, Customer, Invoice, InvoiceLine, Payment, PaymentDetail
from .base import ACTIVE_STATUS, Lines, ResourceMapping, SourceSchema, natural_order, state_is
from .fieldtypes import CalendarDate, Choice, Key, LineNumber, Money, Text

# Drafts and reversal records never get here: they are skipped (tombstoned) before the schema runs.
INVOICE_STATES = {
    "posted": "open",
    "selected": "open",  # selected for payment, still due
    "partiallyPaid": "partially_paid",
    "paid": "paid",
    "noValue": "paid",  # nothing left to pay
    "reversed": "void",
}
PAYMENT_STATES = {"complete": "complete", "reconciled": "complete", "reversed": "voided", "draft": "draft"}
# The mirror record a reversal creates: its original carries the reversal (as reversed/voided).
REVERSAL = "reversal"


class CustomerSchema(SourceSchema):
    customerId = Text(data_key=Customer.ID, required=True)
    name = Text(data_key=Customer.NAME, required=True)
    email = Text(data_key=Customer.EMAIL, load_default=None)
    phone = Text(data_key=Customer.PHONE, load_default=None)
    line1 = Text(data_key=Customer.ADDRESS_LINE1, attribute="billingAddress.line1", load_default=None)
    line2 = Text(data_key=Customer.ADDRESS_LINE2, attribute="billingAddress.line2", load_default=None)
    city = Text(data_key=Customer.CITY, attribute="billingAddress.city", load_default=None)
    region = Text(data_key=Customer.REGION, attribute="billingAddress.region", load_default=None)
    postalCode = Text(data_key=Customer.POST_CODE, attribute="billingAddress.postalCode", load_default=None)
    country = Text(data_key=Customer.COUNTRY, attribute="billingAddress.country", load_default=None)
    currency = Text(data_key=Customer.CURRENCY, load_default=None)
    creditLimit = Money(data_key=Customer.CREDIT_LIMIT, load_default=None)
    paymentTerm = Text(data_key=Customer.TERM, load_default=None)
    status = Choice(ACTIVE_STATUS, data_key=Customer.STATUS, required=True)


class InvoiceLineSchema(SourceSchema):
    lineNumber = LineNumber(data_key=InvoiceLine.LINE_NUMBER, required=True)
    description = Text(data_key=InvoiceLine.MEMO, load_default=None)
    glAccountNumber = Text(data_key=InvoiceLine.GL_ACCOUNT, load_default=None)
    amount = Money(data_key=InvoiceLine.AMOUNT, required=True)


class InvoiceSchema(SourceSchema):
    """Amounts are the transaction currency's (``totalTxn*``), never the base currency's."""

    also_request = (Invoice.ID,)

    invoiceNumber = Text(
        data_key=Invoice.NUMBER, required=True, error_messages={"required": "Missing, and so is id."}
    )
    customerId = Text(data_key=Invoice.CUSTOMER, required=True)
    invoiceDate = CalendarDate(data_key=Invoice.INVOICE_DATE, required=True)
    dueDate = CalendarDate(data_key=Invoice.DUE_DATE, load_default=None)
    currency = Text(data_key=Invoice.CURRENCY, required=True)
    totalAmount = Money(data_key=Invoice.TOTAL, required=True)
    amountPaid = Money(data_key=Invoice.PAID, load_default="0.00")
    amountDue = Money(data_key=Invoice.DUE, required=True)
    state = Choice(INVOICE_STATES, data_key=Invoice.STATE, required=True)
    description = Text(data_key=Invoice.DESCRIPTION, load_default=None)
    referenceNumber = Text(data_key=Invoice.REFERENCE, load_default=None)
    # Multi-entity records name their entity; otherwise the connection's entity is passed in.
    entityId = Text(data_key=Invoice.ENTITY, load_default=None)
    lines = Lines(InvoiceLineSchema, rest_path=InvoiceLine.object_path, parent_field=InvoiceLine.PARENT)

    @pre_load
    def _number_defaults_to_id(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        if Invoice.NUMBER not in data and Invoice.ID in data:
            return {**data, Invoice.NUMBER: data[Invoice.ID]}
        return data

    @post_load
    def _lines_in_order(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        data["lines"] = sorted(data["lines"], key=lambda line: line["lineNumber"])
        return data


class PaymentDetailSchema(SourceSchema):
    # Absent when the detail applies to something other than an invoice (a credit, an advance).
    invoiceExternalId = Key(data_key=PaymentDetail.INVOICE, load_default=None)
    amount = Money(data_key=PaymentDetail.AMOUNT, required=True)


class PaymentSchema(SourceSchema):
    customerId = Text(data_key=Payment.CUSTOMER, required=True)
    receivedDate = CalendarDate(data_key=Payment.RECEIPT_DATE, required=True)
    amount = Money(data_key=Payment.TOTAL, required=True)
    currency = Text(data_key=Payment.CURRENCY, required=True)
    # Intacct's own words (eft, printedCheck, ...): FlexPoint's method is free text.
    method = Text(data_key=Payment.METHOD, load_default=None)
    # intacct-rest.md: FlexPoint's referenceNumber is Intacct's referenceNumber when set (a
    # written-back payment's FP- reference), else its documentNumber (e.g. a check number).
    referenceNumber = Text(data_key=Payment.REFERENCE, load_default=None)
    documentNumber = Text(data_key=Payment.DOCUMENT_NUMBER, load_default=None)
    state = Choice(PAYMENT_STATES, data_key=Payment.STATE, required=True)
    depositBankAccountId = Text(data_key=Payment.BANK_ACCOUNT, load_default=None)
    appliedTo = Lines(
        PaymentDetailSchema, rest_path=PaymentDetail.object_path, parent_field=PaymentDetail.PARENT
    )

    @post_load
    def _invoices_only(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        # FlexPoint's appliedTo names invoices; sorted so an unchanged payment maps identically.
        document = data.pop("documentNumber", None)
        data["referenceNumber"] = data.get("referenceNumber") or document
        applied = [detail for detail in data["appliedTo"] if detail["invoiceExternalId"] is not None]
        data["appliedTo"] = sorted(
            applied,
            key=lambda detail: (natural_order(detail["invoiceExternalId"]), Decimal(detail["amount"])),
        )
        return data


class AdjustmentSchema(SourceSchema):
    also_request = (Adjustment.STATE, Adjustment.POSTING_DATE)

    customerId = Text(data_key=Adjustment.CUSTOMER, required=True)
    adjustmentDate = CalendarDate(
        data_key=Adjustment.CREATED_DATE,
        required=True,
        error_messages={"required": f"Missing, and so is {Adjustment.POSTING_DATE}."},
    )
    amount = Money(data_key=Adjustment.TOTAL, required=True)
    currency = Text(data_key=Adjustment.CURRENCY, required=True)
    description = Text(data_key=Adjustment.DESCRIPTION, load_default=None)
    # intacct-rest.md: documentNumber names the invoice the adjustment refers to, when set.
    invoiceExternalId = Key(data_key=Adjustment.DOCUMENT_NUMBER, load_default=None)

    @pre_load
    def _date_defaults_to_posting_date(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        if Adjustment.CREATED_DATE not in data and Adjustment.POSTING_DATE in data:
            return {**data, Adjustment.CREATED_DATE: data[Adjustment.POSTING_DATE]}
        return data


MAPPINGS = (
    ResourceMapping("customers", CustomerSchema),
    ResourceMapping("invoices", InvoiceSchema, skip=state_is("draft", REVERSAL, field=Invoice.STATE)),
    ResourceMapping("payments", PaymentSchema, skip=state_is(REVERSAL, field=Payment.STATE)),
    # The brief imports no drafts except payments and journal entries, which have a draft state.
    ResourceMapping(
        "adjustments", AdjustmentSchema, skip=state_is("draft", REVERSAL, field=Adjustment.STATE)
    ),
)
