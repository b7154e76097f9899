"""What FlexPoint should hold for the Intacct simulator's records: the oracle of the chaos tests.

Written from the contract (intacct-rest.md "What FlexPoint receives, from which published field",
flexpoint-sync-api.yaml's item schemas, BRIEF.md), not from the service: nothing here imports
``schemas.mappings``, ``clients`` or ``workers``, so a mapping bug cannot hide by being copied
into the expectation. Only what a comparison needs is listed: identity, versions, amounts,
states, the fields the chaos changes, and lines.

The Intacct paths are Sage's published names (the digests in ``shared/spec/intacct-openapi/``),
which the simulator serves; these tables are the one place to change when a name moves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

CENT = Decimal("0.01")


class NoExpectation(ValueError):
    """An Intacct value the contract gives no FlexPoint value for (an unknown state, bad money)."""


@dataclass(frozen=True)
class Kind:
    """How one field is compared: ``expect`` reads the Intacct record (flat, dotted names) at a
    path and gives the value FlexPoint should hold; ``held`` puts FlexPoint's value in the same
    terms (an amount as a Decimal: the contract's Money allows "12.5" as well as "12.50")."""

    expect: Callable[[Mapping[str, Any], str], Any]
    held: Callable[[Any], Any]


def _text(record: Mapping[str, Any], path: str) -> str | None:
    value = record.get(path)
    return None if value is None else str(value)


def _cents(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value)).quantize(CENT)
    except ArithmeticError:
        raise NoExpectation(f"not an amount: {value!r}") from None


def _last4(record: Mapping[str, Any], path: str) -> str | None:
    digits = "".join(c for c in str(record.get(path) or "") if "0" <= c <= "9")
    return digits[-4:] if len(digits) >= 4 else None


def _side(side: str) -> Callable[[Mapping[str, Any], str], Decimal | None]:
    """A journal line's amount in its own column (``txnType``), zero in the other."""

    def amount(record: Mapping[str, Any], path: str) -> Decimal | None:
        return _cents(record.get(path)) if record.get("txnType") == side else Decimal("0.00")

    return amount


def _choice(words: Mapping[str, str]) -> Kind:
    def expect(record: Mapping[str, Any], path: str) -> str:
        value = record.get(path)
        if value not in words:
            raise NoExpectation(f"{path} {value!r} has no FlexPoint value in the contract")
        return words[value]

    return Kind(expect, lambda held: held)


TEXT = Kind(_text, lambda held: held)
INTEGER = Kind(
    lambda record, path: None if record.get(path) is None else int(record[path]), lambda held: held
)
MONEY = Kind(lambda record, path: _cents(record.get(path)), _cents)
# Invoice.amountPaid is Money, never null: an invoice nothing was paid on has paid 0.00.
MONEY_OR_ZERO = Kind(
    lambda record, path: _cents(record.get(path) or 0), lambda held: _cents(0 if held is None else held)
)
LAST4 = Kind(_last4, lambda held: held)  # QUALITY S3: FlexPoint never sees more than 4 digits


def _bank_name(record: Mapping[str, Any], path: str) -> str | None:
    """A bank account's FlexPoint name: ``<bank name> ****<last 4>``, the bank name alone without
    a number, else the account's id (intacct-rest.md, "Bank account")."""
    bank, digits = _text(record, path), _last4(record, "bankAccountDetails.accountNumber")
    if bank and digits:
        return f"{bank} ****{digits}"
    return bank or _text(record, "id")


BANK_NAME = Kind(_bank_name, lambda held: held)
DEBIT = Kind(_side("debit"), _cents)
CREDIT = Kind(_side("credit"), _cents)

STATUS = _choice({"active": "active", "activeNonPosting": "active", "inactive": "inactive"})
INVOICE_STATE = _choice(
    {
        "posted": "open",
        "selected": "open",
        "partiallyPaid": "partially_paid",
        "paid": "paid",
        "noValue": "paid",
        "reversed": "void",
    }
)
PAYMENT_STATE = _choice(
    {
        "complete": "complete",
        "reconciled": "complete",
        "reversed": "voided",
        "draft": "draft",
    }
)
JOURNAL_STATE = _choice(
    {
        "posted": "posted",
        "reversed": "reversed",
        "reversalPending": "reversed",
        **dict.fromkeys(("draft", "submitted", "partiallyApproved", "approved", "declined"), "draft"),
    }
)

# -- the tables --------------------------------------------------------------------------------

# FlexPoint resource -> the simulator's object (admin API /sandbox/companies/<id>/objects/<path>).
OBJECTS: dict[str, str] = {
    "gl-accounts": "general-ledger/account",
    "journal-entries": "general-ledger/journal-entry",
    "customers": "accounts-receivable/customer",
    "invoices": "accounts-receivable/invoice",
    "payments": "accounts-receivable/payment",
    "adjustments": "accounts-receivable/adjustment",
    "bank-accounts": "cash-management/checking-account",
    "deposits": "cash-management/deposit",
    "other-receipts": "cash-management/other-receipt",
    "entities": "company-config/entity",
}

Row = tuple[str, str, Kind]  # (FlexPoint data field, Intacct field path, kind)

# Every record: externalId is its key, sourceVersion its modification time.
KEY_PATH = "key"
VERSION_PATH = "audit.modifiedDateTime"

FIELDS: dict[str, tuple[Row, ...]] = {
    "customers": (
        ("customerId", "id", TEXT),
        ("name", "name", TEXT),
        ("status", "status", STATUS),
        ("creditLimit", "creditLimit", MONEY),
    ),
    "invoices": (
        ("invoiceNumber", "invoiceNumber", TEXT),
        ("customerId", "customer.id", TEXT),
        ("totalAmount", "totalTxnAmount", MONEY),
        ("amountDue", "totalTxnAmountDue", MONEY),
        ("amountPaid", "paymentInformation.totalTxnAmountPaid", MONEY_OR_ZERO),
        ("state", "state", INVOICE_STATE),
        ("description", "description", TEXT),
    ),
    "payments": (
        ("customerId", "customer.id", TEXT),
        ("amount", "txnCurrency.totalAmount", MONEY),
        ("state", "state", PAYMENT_STATE),
    ),
    "adjustments": (
        ("customerId", "customer.id", TEXT),
        ("amount", "txnCurrency.totalEntered", MONEY),
        ("description", "description", TEXT),
    ),
    "gl-accounts": (
        ("accountNumber", "id", TEXT),
        ("title", "name", TEXT),
        ("status", "status", STATUS),
    ),
    "journal-entries": (
        ("journal", "glJournal.id", TEXT),
        ("description", "description", TEXT),
        ("state", "state", JOURNAL_STATE),
    ),
    "bank-accounts": (
        ("bankAccountId", "id", TEXT),
        # The published object has no name: the bank's name and the last 4 digits, else the id.
        ("name", "bankAccountDetails.bankName", BANK_NAME),
        ("accountNumberLast4", "bankAccountDetails.accountNumber", LAST4),
    ),
    "deposits": (
        ("bankAccountId", "bankAccount.id", TEXT),
        ("amount", "txnTotalEntered", MONEY),
        ("description", "description", TEXT),
    ),
    "other-receipts": (
        ("payer", "payer", TEXT),
        ("amount", "txnTotalEntered", MONEY),
        ("description", "description", TEXT),
        ("bankAccountId", "bankAccount.id", TEXT),
    ),
    "entities": (
        ("entityId", "id", TEXT),
        ("name", "name", TEXT),
        ("status", "status", STATUS),
    ),
}


@dataclass(frozen=True)
class Lines:
    """A resource's line object and what FlexPoint makes of its lines.

    ``field`` is the FlexPoint list; ``rows`` the fields of each entry, or one row named None
    when entries are bare values (a deposit's payment keys, each once); a line without
    ``needs`` is not FlexPoint's (a payment detail applying a credit, not an invoice).
    """

    field: str
    object: str
    parent: str  # the line's field holding its record's key
    rows: tuple[tuple[str | None, str, Kind], ...]
    needs: str | None = None


LINES: dict[str, Lines] = {
    "invoices": Lines(
        "lines",
        "accounts-receivable/invoice-line",
        "invoice.key",
        (
            ("lineNumber", "lineNumber", INTEGER),
            ("amount", "txnAmount", MONEY),
            ("glAccountNumber", "glAccount.id", TEXT),
        ),
    ),
    "payments": Lines(
        "appliedTo",
        "accounts-receivable/payment-detail",
        "arPayment.key",
        (
            ("invoiceExternalId", "arInvoice.key", TEXT),
            ("amount", "txnCurrency.paymentAmount", MONEY),
        ),
        needs="arInvoice.key",
    ),
    "journal-entries": Lines(
        "lines",
        "general-ledger/journal-entry-line",
        "journalEntry.key",
        (
            ("lineNumber", "lineNumber", INTEGER),
            ("glAccountNumber", "glAccount.id", TEXT),
            ("debit", "txnAmount", DEBIT),
            ("credit", "txnAmount", CREDIT),
        ),
    ),
    "deposits": Lines(
        "paymentExternalIds",
        "cash-management/deposit-detail",
        "deposit.key",
        # intacct-rest.md's convention: a detail's own key is the deposited payment's key.
        ((None, "key", TEXT),),
        needs="key",
    ),
}

# Records FlexPoint must not import (drafts, the ``reversal`` mirror records) or that leave it
# (a void deposit, a reversed other receipt): a tombstone at the record's own version instead.
NOT_IMPORTED: dict[str, tuple[str, frozenset[str]]] = {
    "invoices": ("state", frozenset({"draft", "reversal"})),
    "payments": ("state", frozenset({"reversal"})),
    "adjustments": ("state", frozenset({"draft", "reversal"})),
    "deposits": ("state", frozenset({"void"})),
    "other-receipts": ("state", frozenset({"reversal", "reversed"})),
}

# -- the expectation -------------------------------------------------------------------------


def flat(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested record by dotted path; null and blank values are left out (Intacct's "not set")."""
    out: dict[str, Any] = {}
    for name, value in record.items():
        if isinstance(value, Mapping):
            out.update(flat(value, f"{prefix}{name}."))
        elif value is not None and not (isinstance(value, str) and not value.strip()):
            out[f"{prefix}{name}"] = value
    return out


def version(text: str) -> datetime:
    """A sourceVersion or modification time as a moment (``Z`` and ``+00:00`` alike)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))


@dataclass(frozen=True)
class Expected:
    key: str
    version: datetime
    deleted: bool
    data: dict[str, Any]  # FlexPoint field -> value in a Kind's ``held`` terms; empty if deleted


def lines_by_parent(resource: str, lines: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The simulator's line records of ``resource`` (flat), by their record's key."""
    source = LINES.get(resource)
    grouped: dict[str, list[dict[str, Any]]] = {}
    if source is not None:
        for line in map(flat, lines):
            if line.get(source.parent) is not None:
                grouped.setdefault(str(line[source.parent]), []).append(line)
    return grouped


def expect(resource: str, record: Mapping[str, Any], lines: Iterable[Mapping[str, Any]] = ()) -> Expected:
    """What FlexPoint should hold for one simulator record (nested, as listed) and its flat lines."""
    fields = flat(record)
    key, moment = str(fields[KEY_PATH]), version(fields[VERSION_PATH])
    skip = NOT_IMPORTED.get(resource)
    if skip is not None and fields.get(skip[0]) in skip[1]:
        return Expected(key, moment, True, {})
    data = {name: kind.expect(fields, path) for name, path, kind in FIELDS[resource]}
    source = LINES.get(resource)
    if source is not None:
        kept = [line for line in lines if source.needs is None or line.get(source.needs) is not None]
        if source.rows[0][0] is None:
            _, path, kind = source.rows[0]
            data[source.field] = sorted({kind.expect(line, path) for line in kept}, key=repr)
        else:
            data[source.field] = _in_order(
                [{n: k.expect(line, p) for n, p, k in source.rows} for line in kept]
            )
    return Expected(key, moment, False, data)


def held(resource: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """FlexPoint's stored data, reduced to the compared fields in the same terms as :func:`expect`."""
    out = {name: kind.held(data.get(name)) for name, _, kind in FIELDS[resource]}
    source = LINES.get(resource)
    if source is not None:
        entries = data.get(source.field)
        if not isinstance(entries, list):
            out[source.field] = entries
        elif source.rows[0][0] is None:
            kind = source.rows[0][2]
            out[source.field] = sorted((kind.held(entry) for entry in entries), key=repr)
        else:
            out[source.field] = _in_order(
                [
                    {n: k.held(entry.get(n)) for n, _, k in source.rows}
                    if isinstance(entry, Mapping)
                    else entry
                    for entry in entries
                ]
            )
    return out


def _in_order(entries: list[Any]) -> list[Any]:
    # The contract gives no order to a list; compare them as multisets.
    return sorted(
        entries, key=lambda entry: repr(sorted(entry.items()) if isinstance(entry, dict) else entry)
    )
