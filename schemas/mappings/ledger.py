"""General Ledger: accounts and journal entries (with lines)."""

from __future__ import annotations

from typing import Any

from marshmallow import post_load

from ..intacct_fields import GlAccount, JournalEntry, JournalEntryLine
from .base import ACTIVE_STATUS, Lines, ResourceMapping, SourceSchema
from .fieldtypes import CalendarDate, Choice, LineNumber, Money, Text

ACCOUNT_TYPES = {"balanceSheet": "balance_sheet", "incomeStatement": "income_statement"}
SIDES = {"debit": "debit", "credit": "credit"}
# intacct-rest.md: posted stays posted, a reversal (done or pending) is reversed, and every state
# of the approval workflow before posting is a draft to FlexPoint.
JOURNAL_ENTRY_STATES = {
    "posted": "posted",
    "reversed": "reversed",
    "reversalPending": "reversed",
    "draft": "draft",
    "submitted": "draft",
    "partiallyApproved": "draft",
    "approved": "draft",
    "declined": "draft",
}


class GlAccountSchema(SourceSchema):
    accountNumber = Text(data_key=GlAccount.ID, required=True)
    title = Text(data_key=GlAccount.NAME, required=True)
    accountType = Choice(ACCOUNT_TYPES, data_key=GlAccount.ACCOUNT_TYPE, required=True)
    normalBalance = Choice(SIDES, data_key=GlAccount.NORMAL_BALANCE, required=True)
    category = Text(data_key=GlAccount.CATEGORY, load_default=None)
    status = Choice(ACTIVE_STATUS, data_key=GlAccount.STATUS, required=True)


class JournalEntryLineSchema(SourceSchema):
    lineNumber = LineNumber(data_key=JournalEntryLine.LINE_NUMBER, required=True)
    glAccountNumber = Text(data_key=JournalEntryLine.GL_ACCOUNT, required=True)
    amount = Money(data_key=JournalEntryLine.AMOUNT, required=True)
    side = Choice(SIDES, data_key=JournalEntryLine.SIDE, required=True)
    memo = Text(data_key=JournalEntryLine.DESCRIPTION, load_default=None)
    locationId = Text(data_key=JournalEntryLine.LOCATION, load_default=None)
    departmentId = Text(data_key=JournalEntryLine.DEPARTMENT, load_default=None)

    @post_load
    def _debit_and_credit(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        # Intacct gives one amount and its side; FlexPoint wants both columns, one of them zero.
        amount, side = data.pop("amount"), data.pop("side")
        return {
            "lineNumber": data.pop("lineNumber"),
            "glAccountNumber": data.pop("glAccountNumber"),
            "debit": amount if side == "debit" else "0.00",
            "credit": amount if side == "credit" else "0.00",
            **data,
        }


class JournalEntrySchema(SourceSchema):
    journal = Text(data_key=JournalEntry.JOURNAL, required=True)
    entryNumber = Text(data_key=JournalEntry.ID, load_default=None)
    postingDate = CalendarDate(data_key=JournalEntry.POSTING_DATE, required=True)
    description = Text(data_key=JournalEntry.DESCRIPTION, load_default=None)
    state = Choice(JOURNAL_ENTRY_STATES, data_key=JournalEntry.STATE, required=True)
    lines = Lines(
        JournalEntryLineSchema, rest_path=JournalEntryLine.object_path, parent_field=JournalEntryLine.PARENT
    )

    @post_load
    def _lines_in_order(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        data["lines"] = sorted(data["lines"], key=lambda line: line["lineNumber"])
        return data


MAPPINGS = (
    ResourceMapping("gl-accounts", GlAccountSchema),
    ResourceMapping("journal-entries", JournalEntrySchema),
)
