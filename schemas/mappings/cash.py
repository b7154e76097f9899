"""Cash Management: bank (checking) accounts, deposits (with details), other receipts."""

from __future__ import annotations

from typing import Any

from marshmallow import post_load, pre_load

from .base import ACTIVE_STATUS, Lines, ResourceMapping, SourceSchema, natural_order
from .fieldtypes import CalendarDate, Choice, Key, Last4, Money, Text


class BankAccountSchema(SourceSchema):
    bankAccountId = Text(data_key="id", required=True)
    name = Text(data_key="name", required=True)
    bankName = Text(data_key="bankAccountDetails.bankName", load_default=None)
    # QUALITY S3: the full number is read only to be cut to its last 4 digits here.
    accountNumberLast4 = Last4(data_key="bankAccountDetails.accountNumber", load_default=None)
    currency = Text(data_key="currency", required=True)
    glAccountNumber = Text(data_key="accounting.glAccount.id", load_default=None)
    status = Choice(ACTIVE_STATUS, data_key="status", required=True)


class DepositDetailSchema(SourceSchema):
    # Absent when the detail deposits an other receipt rather than a customer payment.
    payment = Key(data_key="payment.key", load_default=None)


class DepositSchema(SourceSchema):
    also_request = ("txnDate",)

    bankAccountId = Text(data_key="bankAccount.id", required=True)
    depositDate = CalendarDate(
        data_key="depositDate", required=True, error_messages={"required": "Missing, and so is txnDate."}
    )
    amount = Money(data_key="totalTxnAmount", required=True)
    currency = Text(data_key="currency.txnCurrency", required=True)
    description = Text(data_key="description", load_default=None)
    paymentExternalIds = Lines(
        DepositDetailSchema, rest_path="cash-management/deposit-detail", parent_field="deposit.key"
    )

    @pre_load
    def _date_defaults_to_txn_date(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        if "depositDate" not in data and "txnDate" in data:
            return {**data, "depositDate": data["txnDate"]}
        return data

    @post_load
    def _payment_keys(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        keys = {detail["payment"] for detail in data["paymentExternalIds"] if detail["payment"] is not None}
        data["paymentExternalIds"] = sorted(keys, key=natural_order)
        return data


class OtherReceiptSchema(SourceSchema):
    receivedDate = CalendarDate(data_key="receiptDate", required=True)
    amount = Money(data_key="totalTxnAmount", required=True)
    currency = Text(data_key="currency.txnCurrency", required=True)
    payer = Text(data_key="payer", load_default=None)
    description = Text(data_key="description", load_default=None)
    bankAccountId = Text(data_key="bankAccount.id", load_default=None)


MAPPINGS = (
    ResourceMapping("bank-accounts", BankAccountSchema),
    ResourceMapping("deposits", DepositSchema),
    ResourceMapping("other-receipts", OtherReceiptSchema),
)
