"""Cash Management: bank (checking) accounts, deposits (with details), other receipts."""

from __future__ import annotations

from typing import Any

from marshmallow import post_load

from ..intacct_fields import CheckingAccount, Deposit, DepositDetail, OtherReceipt
from .base import ACTIVE_STATUS, Lines, ResourceMapping, SourceSchema, natural_order, state_is
from .fieldtypes import CalendarDate, Choice, Key, Last4, Money, Text


class BankAccountSchema(SourceSchema):
    """The published checking account has no name: FlexPoint's is the bank's name and the last 4
    digits (``First Bank ****1234``), else the account's id."""

    bankAccountId = Text(data_key=CheckingAccount.ID, required=True)
    bankName = Text(data_key=CheckingAccount.BANK_NAME, load_default=None)
    # QUALITY S3: the full number is read only to be cut to its last 4 digits here.
    accountNumberLast4 = Last4(data_key=CheckingAccount.ACCOUNT_NUMBER, load_default=None)
    currency = Text(data_key=CheckingAccount.CURRENCY, required=True)
    glAccountNumber = Text(data_key=CheckingAccount.GL_ACCOUNT, load_default=None)
    status = Choice(ACTIVE_STATUS, data_key=CheckingAccount.STATUS, required=True)

    @post_load
    def _name(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        bank, digits = data.get("bankName"), data.get("accountNumberLast4")
        name = f"{bank} ****{digits}" if bank and digits else bank or data["bankAccountId"]
        return {"bankAccountId": data["bankAccountId"], "name": name, **data}


class DepositDetailSchema(SourceSchema):
    # intacct-rest.md's convention: a detail's key is the deposited payment's record key.
    payment = Key(data_key=DepositDetail.KEY, load_default=None)


class DepositSchema(SourceSchema):
    also_request = (Deposit.STATE,)

    bankAccountId = Text(data_key=Deposit.BANK_ACCOUNT, required=True)
    depositDate = CalendarDate(data_key=Deposit.DATE, required=True)
    amount = Money(data_key=Deposit.TOTAL, required=True)
    currency = Text(data_key=Deposit.CURRENCY, required=True)
    description = Text(data_key=Deposit.DESCRIPTION, load_default=None)
    paymentExternalIds = Lines(
        DepositDetailSchema, rest_path=DepositDetail.object_path, parent_field=DepositDetail.PARENT
    )

    @post_load
    def _payment_keys(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        keys = {detail["payment"] for detail in data["paymentExternalIds"] if detail["payment"] is not None}
        data["paymentExternalIds"] = sorted(keys, key=natural_order)
        return data


class OtherReceiptSchema(SourceSchema):
    also_request = (OtherReceipt.STATE,)

    receivedDate = CalendarDate(data_key=OtherReceipt.DATE, required=True)
    amount = Money(data_key=OtherReceipt.TOTAL, required=True)
    currency = Text(data_key=OtherReceipt.CURRENCY, required=True)
    payer = Text(data_key=OtherReceipt.PAYER, load_default=None)
    description = Text(data_key=OtherReceipt.DESCRIPTION, load_default=None)
    bankAccountId = Text(data_key=OtherReceipt.BANK_ACCOUNT, load_default=None)


MAPPINGS = (
    ResourceMapping("bank-accounts", BankAccountSchema),
    # A voided deposit leaves FlexPoint (a tombstone).
    ResourceMapping("deposits", DepositSchema, skip=state_is("void", field=Deposit.STATE)),
    # A reversal record is not imported; a reversed receipt leaves FlexPoint.
    ResourceMapping(
        "other-receipts", OtherReceiptSchema, skip=state_is("reversal", "reversed", field=OtherReceipt.STATE)
    ),
)
