"""The Intacct objects the service syncs: the brief's table, as data.

Everything keyed on an object (routing keys, work queues, REST paths, FlexPoint resources)
derives from this one table, so adding an object is one line here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SyncedObject:
    """One Intacct object and where its events go."""

    intacct_object: str
    module: str
    resource: str
    rest_path: str

    def routing_key(self, action: str) -> str:
        return f"{self.module}.{self.resource}.{action}"


OBJECTS: tuple[SyncedObject, ...] = (
    SyncedObject("GLACCOUNT", "gl", "gl-accounts", "general-ledger/account"),
    SyncedObject("GLBATCH", "gl", "journal-entries", "general-ledger/journal-entry"),
    SyncedObject("CUSTOMER", "ar", "customers", "accounts-receivable/customer"),
    SyncedObject("ARINVOICE", "ar", "invoices", "accounts-receivable/invoice"),
    SyncedObject("ARPYMT", "ar", "payments", "accounts-receivable/payment"),
    SyncedObject("ARADJUSTMENT", "ar", "adjustments", "accounts-receivable/adjustment"),
    SyncedObject("CHECKINGACCOUNT", "cm", "bank-accounts", "cash-management/checking-account"),
    SyncedObject("DEPOSIT", "cm", "deposits", "cash-management/deposit"),
    SyncedObject("OTHERRECEIPTS", "cm", "other-receipts", "cash-management/other-receipt"),
    SyncedObject("LOCATIONENTITY", "company", "entities", "company-config/entity"),
)

BY_INTACCT_OBJECT: dict[str, SyncedObject] = {o.intacct_object: o for o in OBJECTS}
BY_RESOURCE: dict[str, SyncedObject] = {o.resource: o for o in OBJECTS}
MODULES: tuple[str, ...] = tuple(dict.fromkeys(o.module for o in OBJECTS))

# Intacct's trigger vocabulary (add/set/delete) and the REST one (create/update/delete) both
# arrive; routing keys and envelopes carry the REST words.
ACTIONS: dict[str, str] = {
    "add": "create",
    "create": "create",
    "set": "update",
    "update": "update",
    "delete": "delete",
}


def lookup(intacct_object: str) -> SyncedObject | None:
    """The synced object for a webhook's ``object`` field (case-insensitive), or None."""
    return BY_INTACCT_OBJECT.get(intacct_object.strip().upper())
