"""Accounts Receivable: customers, invoices (with lines), payments (with details), adjustments."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from marshmallow import post_load, pre_load

from .base import ACTIVE_STATUS, Lines, ResourceMapping, SourceSchema, natural_order, state_is
from .fieldtypes import CalendarDate, Choice, Key, LineNumber, Money, Text

_ADDRESS = "contacts.default.mailingAddress"
# Drafts never get here: they are skipped (tombstoned) before the schema runs.
INVOICE_STATES = {"posted": "open", "partiallyPaid": "partially_paid", "paid": "paid", "reversed": "void"}
PAYMENT_STATES = {"complete": "complete", "voided": "voided", "draft": "draft"}


class CustomerSchema(SourceSchema):
    customerId = Text(data_key="id", required=True)
    name = Text(data_key="name", required=True)
    email = Text(data_key="contacts.default.email1", load_default=None)
    phone = Text(data_key="contacts.default.phone1", load_default=None)
    # Intacct's mailing address names (REST, as the simulator serves them) -> FlexPoint's Address.
    line1 = Text(data_key=f"{_ADDRESS}.addressLine1", attribute="billingAddress.line1", load_default=None)
    line2 = Text(data_key=f"{_ADDRESS}.addressLine2", attribute="billingAddress.line2", load_default=None)
    city = Text(data_key=f"{_ADDRESS}.city", attribute="billingAddress.city", load_default=None)
    region = Text(data_key=f"{_ADDRESS}.state", attribute="billingAddress.region", load_default=None)
    postalCode = Text(
        data_key=f"{_ADDRESS}.postCode", attribute="billingAddress.postalCode", load_default=None
    )
    country = Text(data_key=f"{_ADDRESS}.country", attribute="billingAddress.country", load_default=None)
    currency = Text(data_key="currency", load_default=None)
    creditLimit = Money(data_key="creditLimit", load_default=None)
    paymentTerm = Text(data_key="term.id", load_default=None)
    status = Choice(ACTIVE_STATUS, data_key="status", required=True)


class InvoiceLineSchema(SourceSchema):
    lineNumber = LineNumber(data_key="lineNumber", required=True)
    description = Text(data_key="memo", load_default=None)
    glAccountNumber = Text(data_key="glAccount.id", load_default=None)
    amount = Money(data_key="txnAmount", required=True)


class InvoiceSchema(SourceSchema):
    """Amounts are the transaction currency's (``totalTxn*``), never the base currency's."""

    also_request = ("id",)

    invoiceNumber = Text(
        data_key="invoiceNumber", required=True, error_messages={"required": "Missing, and so is id."}
    )
    customerId = Text(data_key="customer.id", required=True)
    invoiceDate = CalendarDate(data_key="invoiceDate", required=True)
    dueDate = CalendarDate(data_key="dueDate", load_default=None)
    currency = Text(data_key="currency.txnCurrency", required=True)
    totalAmount = Money(data_key="totalTxnAmount", required=True)
    amountPaid = Money(data_key="totalTxnAmountPaid", load_default="0.00")
    amountDue = Money(data_key="totalTxnAmountDue", required=True)
    state = Choice(INVOICE_STATES, data_key="state", required=True)
    description = Text(data_key="description", load_default=None)
    referenceNumber = Text(data_key="referenceNumber", load_default=None)
    # Multi-entity records name their entity; otherwise the connection's entity is passed in.
    entityId = Text(data_key="entity.id", load_default=None, metadata={"requested": False})
    lines = Lines(InvoiceLineSchema, rest_path="accounts-receivable/invoice-line", parent_field="invoice.key")

    @pre_load
    def _number_defaults_to_id(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        if "invoiceNumber" not in data and "id" in data:
            return {**data, "invoiceNumber": data["id"]}
        return data

    @post_load
    def _lines_in_order(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        data["lines"] = sorted(data["lines"], key=lambda line: line["lineNumber"])
        return data


class PaymentDetailSchema(SourceSchema):
    # Absent when the detail applies to something other than an invoice (a credit, an advance).
    invoiceExternalId = Key(data_key="invoice.key", load_default=None)
    amount = Money(data_key="txnAmount", required=True)


class PaymentSchema(SourceSchema):
    customerId = Text(data_key="customer.id", required=True)
    receivedDate = CalendarDate(data_key="receiptDate", required=True)
    amount = Money(data_key="totalTxnAmount", required=True)
    currency = Text(data_key="currency.txnCurrency", required=True)
    # Intacct's own words (eft, printedCheck, ...): FlexPoint's method is free text.
    method = Text(data_key="paymentMethod", load_default=None)
    # intacct-rest.md: FlexPoint's referenceNumber is Intacct's referenceNumber when set (a
    # written-back payment's FP-<paymentId>), else its documentNumber (e.g. a check number).
    referenceNumber = Text(data_key="referenceNumber", load_default=None)
    documentNumber = Text(data_key="documentNumber", load_default=None)
    state = Choice(PAYMENT_STATES, data_key="state", required=True)
    depositBankAccountId = Text(data_key="financialEntity.entityId", load_default=None)
    appliedTo = Lines(
        PaymentDetailSchema, rest_path="accounts-receivable/payment-detail", parent_field="payment.key"
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
    also_request = ("state",)

    customerId = Text(data_key="customer.id", required=True)
    adjustmentDate = CalendarDate(data_key="adjustmentDate", required=True)
    amount = Money(data_key="totalTxnAmount", required=True)
    currency = Text(data_key="currency.txnCurrency", required=True)
    description = Text(data_key="description", load_default=None)
    # Read from a GET; the simulator's query service does not serve it.
    invoiceExternalId = Key(data_key="invoice.key", load_default=None, metadata={"requested": False})


MAPPINGS = (
    ResourceMapping("customers", CustomerSchema),
    ResourceMapping("invoices", InvoiceSchema, skip=state_is("draft")),
    ResourceMapping("payments", PaymentSchema),
    # The brief imports no drafts except payments and journal entries, which have a draft state.
    ResourceMapping("adjustments", AdjustmentSchema, skip=state_is("draft")),
)
