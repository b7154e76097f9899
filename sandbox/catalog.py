"""The Intacct objects FlexPoint syncs, as the brief's table names them (BRIEF.md, "Webhooks").

The simulator needs each object's trigger name (what a Platform Trigger's webhook says in
``object``) and its REST path; the tour also needs the FlexPoint resource a record lands in.
Kept here, in the sandbox's own words, so the simulator follows the contract rather than the
service's code: if the two ever disagree, tests that run the service against the simulator say so.
"""

from __future__ import annotations

from typing import NamedTuple


class TriggerObject(NamedTuple):
    name: str  # Intacct's object name, as in a trigger's body: ARINVOICE
    rest_path: str  # area/object under /objects/: accounts-receivable/invoice
    resource: str  # where FlexPoint keeps it: invoices


# One row per line of the brief's table: name, module (unused here), resource, REST path.
_TABLE = """
GLACCOUNT        gl       gl-accounts      general-ledger/account
GLBATCH          gl       journal-entries  general-ledger/journal-entry
CUSTOMER         ar       customers        accounts-receivable/customer
ARINVOICE        ar       invoices         accounts-receivable/invoice
ARPYMT           ar       payments         accounts-receivable/payment
ARADJUSTMENT     ar       adjustments      accounts-receivable/adjustment
CHECKINGACCOUNT  cm       bank-accounts    cash-management/checking-account
DEPOSIT          cm       deposits         cash-management/deposit
OTHERRECEIPTS    cm       other-receipts   cash-management/other-receipt
LOCATIONENTITY   company  entities         company-config/entity
"""

TRIGGER_OBJECTS: tuple[TriggerObject, ...] = tuple(
    TriggerObject(name=name, rest_path=path, resource=resource)
    for name, _module, resource, path in (row.split() for row in _TABLE.strip().splitlines())
)
BY_NAME: dict[str, TriggerObject] = {o.name: o for o in TRIGGER_OBJECTS}
BY_REST_PATH: dict[str, TriggerObject] = {o.rest_path: o for o in TRIGGER_OBJECTS}
