"""General Ledger: accounts and journal entries (with lines)."""

from __future__ import annotations

from typing import Any

from marshmallow import post_load

from .base import ACTIVE_STATUS, Lines, ResourceMapping, SourceSchema
from .fieldtypes import CalendarDate, Choice, LineNumber, Money, Text

ACCOUNT_TYPES = {"balanceSheet": "balance_sheet", "incomeStatement": "income_statement"}
SIDES = {"debit": "debit", "credit": "credit"}
# Drafts are imported as drafts (the brief); other states are not guessed at.
JOURNAL_ENTRY_STATES = {"draft": "draft", "posted": "posted", "reversed": "reversed"}


class GlAccountSchema(SourceSchema):
    accountNumber = Text(data_key="id", required=True)
    title = Text(data_key="name", required=True)
    accountType = Choice(ACCOUNT_TYPES, data_key="accountType", required=True)
    normalBalance = Choice(SIDES, data_key="normalBalance", required=True)
    category = Text(data_key="category", load_default=None)
    status = Choice(ACTIVE_STATUS, data_key="status", required=True)


class JournalEntryLineSchema(SourceSchema):
    lineNumber = LineNumber(data_key="lineNumber", required=True)
    glAccountNumber = Text(data_key="glAccount.id", required=True)
    amount = Money(data_key="txnAmount", required=True)
    side = Choice(SIDES, data_key="txnType", required=True)
    memo = Text(data_key="memo", load_default=None)
    locationId = Text(data_key="dimensions.location.id", load_default=None)
    departmentId = Text(data_key="dimensions.department.id", load_default=None)

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
    journal = Text(data_key="journal.id", required=True)
    entryNumber = Text(data_key="id", load_default=None)
    postingDate = CalendarDate(data_key="postingDate", required=True)
    description = Text(data_key="description", load_default=None)
    state = Choice(JOURNAL_ENTRY_STATES, data_key="state", required=True)
    lines = Lines(
        JournalEntryLineSchema, rest_path="general-ledger/journal-entry-line", parent_field="journalEntry.key"
    )

    @post_load
    def _lines_in_order(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        data["lines"] = sorted(data["lines"], key=lambda line: line["lineNumber"])
        return data


MAPPINGS = (
    ResourceMapping("gl-accounts", GlAccountSchema),
    ResourceMapping("journal-entries", JournalEntrySchema),
)
