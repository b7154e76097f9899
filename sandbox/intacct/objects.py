"""The simulated Intacct objects: each one's REST path, fields (dotted published paths) and kinds.

The fields are Sage's published ones (:mod:`schema`); the top-level objects' trigger names come
from :mod:`sandbox.catalog` (the brief's table). Each field is a column of the object's table, so
filters, ordering and projection are plain SQL; a GET nests them by their dots.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property

from sandbox.catalog import TRIGGER_OBJECTS

from .schema import SCHEMAS, FieldSpec, ObjectSchema


class Kind(Enum):
    """How a field is stored, compared and rendered."""

    KEY = "key"  # RECORDNO: INTEGER column, rendered as a string
    REF = "ref"  # another record's key (a line's parent, a payment detail's invoice)
    TEXT = "text"
    DECIMAL = "decimal"  # money: TEXT "1250.00", compared numerically
    INT = "int"
    NUMBER = "number"  # a JSON number (creditLimit, exchange rates)
    BOOL = "bool"  # INTEGER 0/1, rendered true/false
    DATE = "date"  # TEXT YYYY-MM-DD
    DATETIME = "datetime"  # INTEGER unix seconds, rendered RFC 3339 UTC
    HREF = "href"  # computed from the key, not stored
    REF_HREF = "ref_href"  # a reference's href, computed from the reference's key


@dataclass(frozen=True)
class Field:
    """One field: its dotted camelCase name and how it is stored."""

    name: str
    kind: Kind
    spec: FieldSpec | None = None
    target: str | None = None  # REF_HREF: the referenced object's path

    @cached_property
    def column(self) -> str:
        # Dotted names become double-underscored columns: valid unquoted SQL identifiers.
        return self.name.replace(".", "__")

    @property
    def readable(self) -> bool:
        """False for writeOnly fields (overPaymentAmount): kept, never served."""
        return not (self.spec is not None and self.spec.write_only)

    @property
    def stored(self) -> bool:
        return self.kind not in (Kind.HREF, Kind.REF_HREF)


@dataclass(frozen=True)
class ObjectType:
    """One REST object (``area/name``) and everything the simulator derives from it.

    The derived properties are cached on the instance (it is frozen): requests read them many
    times each, and rebuilding ``by_name`` per call was a measurable share of a request's CPU.
    """

    path: str
    fields: tuple[Field, ...]
    schema: ObjectSchema
    intacct_object: str | None = None  # trigger name (ARINVOICE); None for line objects
    parent_path: str | None = None  # line objects: the parent's path
    parent_field: str | None = None  # line objects: e.g. "invoice.key", "arPayment.key"
    children_payload: str | None = None  # parents: the embedded array ("lines", "paymentDetails")
    id_field: str | None = None  # a field the id mirrors (invoiceNumber); None: id is given
    id_prefix: str | None = None  # generated ids: f"{prefix}-{key:06d}"; None: str(key)
    unique_id: bool = False  # Intacct refuses a second record with the same id
    defaults: dict[str, object] = field(default_factory=dict)

    @cached_property
    def area(self) -> str:
        return self.path.split("/", 1)[0]

    @cached_property
    def permission_area(self) -> str:
        # Roles name the Company area; REST paths call it company-config.
        return "company" if self.area == "company-config" else self.area

    @cached_property
    def table(self) -> str:
        return "o_" + self.path.replace("-", "_").replace("/", "__")

    @cached_property
    def by_name(self) -> dict[str, Field]:
        return {f.name: f for f in self.fields}

    @cached_property
    def stored_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.stored)

    @cached_property
    def ref_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.kind is Kind.REF)


# Dates a new record gets today's date for unless given (every other date starts empty).
TODAY_DATES = frozenset(
    {"invoiceDate", "paymentSummary.receiptDate", "createdDate", "postingDate", "txnDate"}
)
AREAS = ("company", "general-ledger", "accounts-receivable", "cash-management")
SYSTEM_FIELDS = frozenset(
    {"key", "href", "audit.createdDateTime", "audit.modifiedDateTime", "audit.createdBy", "audit.modifiedBy"}
)
_KINDS = {
    "string": Kind.TEXT,
    "dp2": Kind.DECIMAL,
    "date": Kind.DATE,
    "datetime": Kind.DATETIME,
    "integer": Kind.INT,
    "number": Kind.NUMBER,
    "boolean": Kind.BOOL,
}

# Line objects: their parent and the published pointer to it (see the digests' "Parent pointer").
_PARENTS = {
    "accounts-receivable/invoice-line": ("accounts-receivable/invoice", "invoice.key"),
    "accounts-receivable/payment-detail": ("accounts-receivable/payment", "arPayment.key"),
    "accounts-receivable/adjustment-line": ("accounts-receivable/adjustment", "arAdjustment.key"),
    "general-ledger/journal-entry-line": ("general-ledger/journal-entry", "journalEntry.key"),
    "cash-management/deposit-detail": ("cash-management/deposit", "deposit.key"),
    "cash-management/other-receipt-line": ("cash-management/other-receipt", "otherReceipts.key"),
}
# A reference key stored as a record key (an index serves it; its ``href`` is computed).
REF_TARGETS: dict[tuple[str, str], str] = {
    **{(line, pointer): parent for line, (parent, pointer) in _PARENTS.items()},
    ("accounts-receivable/payment-detail", "arInvoice.key"): "accounts-receivable/invoice",
}

# The simulator's own choices per object (not Sage's): generated ids, unique ids, defaults.
_OPTIONS: dict[str, dict[str, object]] = {
    "company-config/entity": {"unique_id": True, "defaults": {"status": "active", "baseCurrency.id": "USD"}},
    "general-ledger/account": {
        "unique_id": True,
        "defaults": {"status": "active", "accountType": "balanceSheet", "normalBalance": "debit"},
    },
    "general-ledger/journal-entry": {"defaults": {"glJournal.id": "GJ", "state": "posted"}},
    "general-ledger/journal-entry-line": {"defaults": {"txnType": "debit", "state": "posted"}},
    "accounts-receivable/customer": {
        "id_prefix": "C",
        "unique_id": True,
        "defaults": {"status": "active", "currency": "USD"},
    },
    "accounts-receivable/invoice": {
        "id_field": "invoiceNumber",
        "id_prefix": "INV",
        "unique_id": True,
        "defaults": {"state": "posted", "currency.txnCurrency": "USD", "recordType": "ri"},
    },
    "accounts-receivable/payment": {
        "defaults": {
            "state": "complete",
            "paymentMethod": "eft",
            "txnCurrency.currency": "USD",
            "recordType": "rp",
            "bankReconciliationStatus": "uncleared",
        }
    },
    "accounts-receivable/adjustment": {
        "id_prefix": "ADJ",
        "defaults": {"state": "posted", "txnCurrency.currency": "USD", "txnType": "ra"},
    },
    "cash-management/checking-account": {
        "unique_id": True,
        "defaults": {"status": "active", "bankAccountDetails.currency": "USD"},
    },
    "cash-management/deposit": {
        "id_prefix": "DEP",
        "defaults": {"txnCurrency": "USD", "reconciliationState": "uncleared"},
    },
    "cash-management/deposit-detail": {"defaults": {"state": "deposited", "status": "active"}},
    "cash-management/other-receipt": {
        "defaults": {
            "state": "approved",
            "paymentMethod": "cash",
            "txnCurrency": "USD",
            "reconciliationState": "uncleared",
            "sourceModule": "cashManagement",
            "recordType": "cr",
        }
    },
    "cash-management/other-receipt-line": {"defaults": {"status": "active"}},
}


def _kind(path: str, spec: FieldSpec) -> Kind:
    if spec.path == "key":
        return Kind.KEY
    if spec.path == "href":
        return Kind.HREF
    if (path, spec.path) in REF_TARGETS:
        return Kind.REF
    if spec.path.endswith(".href") and (path, spec.path[: -len("href")] + "key") in REF_TARGETS:
        return Kind.REF_HREF
    return _KINDS[spec.type]


def _build() -> dict[str, ObjectType]:
    triggers = {o.rest_path: o.name for o in TRIGGER_OBJECTS}
    missing = set(triggers) - set(SCHEMAS)
    if missing:  # the brief's table grew: the simulator must learn the new object's schema
        raise RuntimeError(f"no published schema for {sorted(missing)}")
    types = {}
    for path, schema in SCHEMAS.items():
        fields = []
        for spec in schema.fields:
            kind = _kind(path, spec)
            target = None
            if kind is Kind.REF_HREF:
                target = REF_TARGETS[(path, spec.path[: -len("href")] + "key")]
            fields.append(Field(spec.path, kind, spec, target))
        parent_path, parent_field = _PARENTS.get(path, (None, None))
        children = next(iter(schema.arrays), None)
        types[path] = ObjectType(
            path=path,
            fields=tuple(fields),
            schema=schema,
            intacct_object=triggers.get(path),
            parent_path=parent_path,
            parent_field=parent_field,
            children_payload=children,
            **_OPTIONS.get(path, {}),  # type: ignore[arg-type]
        )
    return types


OBJECT_TYPES: dict[str, ObjectType] = _build()
# Parent path -> its line object (every parent has exactly one line object).
LINES_OF: dict[str, ObjectType] = {t.parent_path: t for t in OBJECT_TYPES.values() if t.parent_path}


def lookup(path: str) -> ObjectType | None:
    """The object type for ``area/name``, or None."""
    return OBJECT_TYPES.get(path.strip("/"))
