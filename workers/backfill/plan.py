"""Which resources a backfill imports, in which order: those others refer to come first."""

from __future__ import annotations

from schemas.catalog import BY_RESOURCE, OBJECTS, SyncedObject

# Entities, accounts, customers and bank accounts are what documents name; payments refer to
# invoices and deposits to payments, so each document comes after what it points at.
ORDER: tuple[str, ...] = (
    "entities",
    "gl-accounts",
    "customers",
    "bank-accounts",
    "invoices",
    "adjustments",
    "payments",
    "journal-entries",
    "deposits",
    "other-receipts",
)


def resources() -> tuple[SyncedObject, ...]:
    """Every synced object of the catalog, in import order (any object not named above goes last)."""
    known = [BY_RESOURCE[name] for name in ORDER if name in BY_RESOURCE]
    rest = [obj for obj in OBJECTS if obj.resource not in ORDER]
    return (*known, *rest)
