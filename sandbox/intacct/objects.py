"""The simulated Intacct objects: each one's REST path, fields (dotted camelCase names) and kinds.

The top-level objects and their trigger names come from :mod:`sandbox.catalog` (the brief's
table); this module adds the fields intacct-rest.md lists and the line objects hanging off them.
Each field is a column of the object's table, so filters, ordering and projection are plain SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from sandbox.catalog import TRIGGER_OBJECTS


class Kind(Enum):
    """How a field is stored, compared and rendered."""

    KEY = "key"  # RECORDNO: INTEGER column, rendered as a string
    REF = "ref"  # another record's key (a line's parent, a payment detail's invoice)
    TEXT = "text"
    DECIMAL = "decimal"  # money: TEXT "1250.00", compared numerically
    INT = "int"
    DATE = "date"  # TEXT YYYY-MM-DD
    DATETIME = "datetime"  # INTEGER unix seconds, rendered RFC 3339 UTC
    HREF = "href"  # computed from the key, not stored


@dataclass(frozen=True)
class Field:
    """One field: its dotted camelCase name and how it is stored."""

    name: str
    kind: Kind

    @property
    def column(self) -> str:
        # Dotted names become double-underscored columns: valid unquoted SQL identifiers.
        return self.name.replace(".", "__")

    @property
    def stored(self) -> bool:
        return self.kind is not Kind.HREF


@dataclass(frozen=True)
class ObjectType:
    """One REST object (``area/name``) and everything the simulator derives from it."""

    path: str
    fields: tuple[Field, ...]
    intacct_object: str | None = None  # trigger name (ARINVOICE); None for line objects
    parent_path: str | None = None  # line objects: the parent's path
    parent_field: str | None = None  # line objects: e.g. "invoice.key"
    children_payload: str | None = None  # parents: payload key holding their lines ("lines")
    id_field: str | None = None  # a field the id mirrors (invoiceNumber); None: id is given
    id_prefix: str | None = None  # generated ids: f"{prefix}-{key:06d}"; None: str(key)
    unique_id: bool = False  # Intacct refuses a second record with the same id
    defaults: dict[str, object] = field(default_factory=dict)

    @property
    def area(self) -> str:
        return self.path.split("/", 1)[0]

    @property
    def permission_area(self) -> str:
        # Roles name the Company area; REST paths call it company-config.
        return "company" if self.area == "company-config" else self.area

    @property
    def table(self) -> str:
        return "o_" + self.path.replace("-", "_").replace("/", "__")

    @property
    def by_name(self) -> dict[str, Field]:
        return {f.name: f for f in self.fields}

    @property
    def stored_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.stored)

    @property
    def ref_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.kind is Kind.REF)


K, R, T, D, N, DAY, TS = Kind.KEY, Kind.REF, Kind.TEXT, Kind.DECIMAL, Kind.INT, Kind.DATE, Kind.DATETIME
# Dates a new record leaves empty unless given (every other date defaults to today).
OPTIONAL_DATES = frozenset({"dueDate", "reversedDate"})
AREAS = ("company", "general-ledger", "accounts-receivable", "cash-management")
SYSTEM_FIELDS = frozenset(
    {"key", "href", "audit.createdDateTime", "audit.modifiedDateTime", "audit.createdBy", "audit.modifiedBy"}
)
_COMMON = (
    ("key", K),
    ("id", T),
    ("href", Kind.HREF),
    ("audit.createdDateTime", TS),
    ("audit.modifiedDateTime", TS),
    ("audit.createdBy", T),
    ("audit.modifiedBy", T),
)
_USD = {"currency.txnCurrency": "USD"}

# path -> (own fields, ObjectType options)
_SPECS: dict[str, tuple[tuple[tuple[str, Kind], ...], dict[str, object]]] = {
    "company-config/entity": (
        (("name", T), ("currency", T), ("status", T)),
        {"unique_id": True, "defaults": {"status": "active", "currency": "USD"}},
    ),
    "general-ledger/account": (
        (("name", T), ("accountType", T), ("normalBalance", T), ("category", T), ("status", T)),
        {
            "unique_id": True,
            "defaults": {"status": "active", "accountType": "balanceSheet", "normalBalance": "debit"},
        },
    ),
    "general-ledger/journal-entry": (
        (("journal.id", T), ("postingDate", DAY), ("description", T), ("state", T), ("referenceNumber", T)),
        {"children_payload": "lines", "defaults": {"journal.id": "GJ", "state": "posted"}},
    ),
    "general-ledger/journal-entry-line": (
        (
            ("journalEntry.key", R),
            ("lineNumber", N),
            ("glAccount.id", T),
            ("txnAmount", D),
            ("txnType", T),
            ("memo", T),
            ("dimensions.location.id", T),
            ("dimensions.department.id", T),
        ),
        {"parent_path": "general-ledger/journal-entry", "parent_field": "journalEntry.key"},
    ),
    "accounts-receivable/customer": (
        (
            ("name", T),
            ("status", T),
            ("creditLimit", D),
            ("contacts.default.email1", T),
            ("contacts.default.phone1", T),
            ("contacts.default.mailingAddress.addressLine1", T),
            ("contacts.default.mailingAddress.addressLine2", T),
            ("contacts.default.mailingAddress.city", T),
            ("contacts.default.mailingAddress.state", T),
            ("contacts.default.mailingAddress.postCode", T),
            ("contacts.default.mailingAddress.country", T),
            ("currency", T),
            ("term.id", T),
        ),
        {"id_prefix": "C", "unique_id": True, "defaults": {"status": "active", "currency": "USD"}},
    ),
    "accounts-receivable/invoice": (
        (
            ("invoiceNumber", T),
            ("customer.id", T),
            ("invoiceDate", DAY),
            ("dueDate", DAY),
            ("state", T),
            ("currency.txnCurrency", T),
            ("totalTxnAmount", D),
            ("totalTxnAmountDue", D),
            ("totalTxnAmountPaid", D),
            ("referenceNumber", T),
            ("description", T),
            ("term.id", T),
        ),
        {
            "children_payload": "lines",
            "id_field": "invoiceNumber",
            "id_prefix": "INV",
            "unique_id": True,
            "defaults": {"state": "posted", **_USD},
        },
    ),
    "accounts-receivable/invoice-line": (
        (
            ("invoice.key", R),
            ("lineNumber", N),
            ("txnAmount", D),
            ("glAccount.id", T),
            ("memo", T),
            ("dimensions.location.id", T),
        ),
        {"parent_path": "accounts-receivable/invoice", "parent_field": "invoice.key"},
    ),
    "accounts-receivable/payment": (
        (
            ("customer.id", T),
            ("paymentMethod", T),
            ("receiptDate", DAY),
            ("totalTxnAmount", D),
            ("state", T),
            ("financialEntity.entityId", T),
            ("documentNumber", T),
            ("currency.txnCurrency", T),
            ("description", T),
            # The write-back's fields (intacct-rest.md "Writing payments").
            ("referenceNumber", T),
            ("undepositedGLAccount.id", T),
            ("overPaymentAmount", D),
            ("reversedDate", DAY),
            ("reversalMemo", T),
        ),
        {"children_payload": "details", "defaults": {"state": "complete", "paymentMethod": "eft", **_USD}},
    ),
    "accounts-receivable/payment-detail": (
        (("payment.key", R), ("invoice.key", R), ("txnAmount", D)),
        {"parent_path": "accounts-receivable/payment", "parent_field": "payment.key"},
    ),
    "accounts-receivable/adjustment": (
        (
            ("customer.id", T),
            ("adjustmentDate", DAY),
            ("totalTxnAmount", D),
            ("description", T),
            ("currency.txnCurrency", T),
            ("state", T),
        ),
        {"id_prefix": "ADJ", "defaults": {"state": "posted", **_USD}},
    ),
    "cash-management/checking-account": (
        (
            ("name", T),
            ("bankAccountDetails.accountNumber", T),
            ("bankAccountDetails.bankName", T),
            ("bankAccountDetails.routingNumber", T),
            ("currency", T),
            ("accounting.glAccount.id", T),
            ("status", T),
        ),
        {"unique_id": True, "defaults": {"status": "active", "currency": "USD"}},
    ),
    "cash-management/deposit": (
        (
            ("bankAccount.id", T),
            ("depositDate", DAY),
            ("txnDate", DAY),
            ("totalTxnAmount", D),
            ("description", T),
            ("currency.txnCurrency", T),
            ("state", T),
        ),
        {"children_payload": "details", "id_prefix": "DEP", "defaults": {"state": "deposited", **_USD}},
    ),
    "cash-management/deposit-detail": (
        (("deposit.key", R), ("payment.key", R), ("txnAmount", D)),
        {"parent_path": "cash-management/deposit", "parent_field": "deposit.key"},
    ),
    "cash-management/other-receipt": (
        (
            ("receiptDate", DAY),
            ("payer", T),
            ("totalTxnAmount", D),
            ("description", T),
            ("bankAccount.id", T),
            ("paymentMethod", T),
            ("currency.txnCurrency", T),
            ("state", T),
        ),
        {"defaults": {"state": "complete", "paymentMethod": "eft", **_USD}},
    ),
}


def _build() -> dict[str, ObjectType]:
    triggers = {o.rest_path: o.name for o in TRIGGER_OBJECTS}
    missing = set(triggers) - set(_SPECS)
    if missing:  # the brief's table grew: the simulator must learn the new object's fields
        raise RuntimeError(f"no simulator fields for {sorted(missing)}")
    types = {}
    for path, (own, options) in _SPECS.items():
        fields = tuple(Field(name, kind) for name, kind in (*_COMMON, *own))
        types[path] = ObjectType(path=path, fields=fields, intacct_object=triggers.get(path), **options)
    return types


OBJECT_TYPES: dict[str, ObjectType] = _build()
# Parent path -> its line object (every parent has exactly one line object).
LINES_OF: dict[str, ObjectType] = {t.parent_path: t for t in OBJECT_TYPES.values() if t.parent_path}


# A REF field's name -> the object whose key it holds.
REF_TARGETS: dict[str, str] = {
    "invoice.key": "accounts-receivable/invoice",
    "payment.key": "accounts-receivable/payment",
    "journalEntry.key": "general-ledger/journal-entry",
    "deposit.key": "cash-management/deposit",
}


def lookup(path: str) -> ObjectType | None:
    """The object type for ``area/name``, or None."""
    return OBJECT_TYPES.get(path.strip("/"))
