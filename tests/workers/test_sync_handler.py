"""The sync handler with its dependencies injected: what it reads from Intacct and writes to FlexPoint."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.test_mappings import invoice_line, invoice_record, payment_detail, payment_record
from workers.connections.store import ConnectionRecord
from workers.sync.groups import Event, Group
from workers.sync.handler import SyncHandler

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CONNECTION = ConnectionRecord(
    connection_id="c1",
    account_id="acct-1",
    company_id="CO-1",
    entity_id=None,
    user_id="ws",
    state="connected",
    webhook_secrets=(),
    created_at=NOW,
    updated_at=NOW,
)


class RecordingIntacct:
    """Intacct's records in memory, with every read it was asked for."""

    def __init__(self, records: dict[str, dict[str, dict]], lines: dict[str, list[dict]]) -> None:
        self.records = records
        self.lines = lines
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.forgotten: list[str] = []

    def forget(self, connection_id: str) -> None:
        self.forgotten.append(connection_id)

    def get_many(self, connection: Any, rest_path: str, keys: list[str]):
        self.calls.append((rest_path, tuple(keys)))
        found = [self.records[rest_path][k] for k in keys if k in self.records[rest_path]]
        return found, [k for k in keys if k not in self.records[rest_path]]

    def query_all(
        self, connection: Any, rest_path: str, *, fields: list[str], filters: list[dict], size: int
    ):
        [(parent_field, keys)] = filters[0]["$in"].items()
        self.calls.append((rest_path, tuple(keys)))
        parent = parent_field.split(".")[0]
        return [line for line in self.lines[rest_path] if line[parent]["key"] in keys]


class RecordingFlexPoint:
    def __init__(self) -> None:
        self.upserts: list[tuple[str, str, list[dict]]] = []

    def upsert(self, account_id: str, resource: str, connection_id: str, items: list[dict]) -> None:
        self.upserts.append((account_id, resource, items))


def _event(resource: str, key: str) -> Event:
    envelope = {"connectionId": "c1", "resource": resource, "key": key, "occurredAt": None}
    return Event(envelope, message=None, queue="sync.ar", received=0.0)


def test_a_payment_group_reads_its_invoices_and_its_riders_in_one_batch():
    intacct = RecordingIntacct(
        records={
            "accounts-receivable/payment": {"880": payment_record()},
            "accounts-receivable/invoice": {
                "1042": invoice_record(),
                "2001": invoice_record(key="2001", id="INV-2001", invoiceNumber="INV-2001"),
            },
        },
        lines={
            "accounts-receivable/payment-detail": [payment_detail("1", "1042", "700.00")],
            "accounts-receivable/invoice-line": [
                invoice_line("11", 1, "1250"),
                invoice_line("21", 1, "10", invoice={"key": "2001"}),
            ],
        },
    )
    flexpoint = RecordingFlexPoint()
    handler = SyncHandler(
        connections={"c1": CONNECTION}, intacct=intacct, flexpoint=flexpoint, clock=lambda: NOW
    )
    group = Group("c1", "payments", [_event("payments", "880")])
    # Invoice 2001 changed on its own; 3000 was deleted: both ride with the payment's refresh.
    group.rider = Group("c1", "invoices", [_event("invoices", "2001"), _event("invoices", "3000")])

    outcome = handler.process(group)

    assert len(outcome.done) == 3 and not outcome.failed
    invoice_reads = [keys for path, keys in intacct.calls if path.startswith("accounts-receivable/invoice")]
    assert invoice_reads == [("2001", "3000", "1042"), ("2001", "1042")]  # one GET, one line query
    [(_, first, payments), (_, second, invoices)] = flexpoint.upserts
    assert (first, second) == ("payments", "invoices")
    assert {item["externalId"]: bool(item.get("deleted")) for item in invoices} == {
        "2001": False,
        "1042": False,
        "3000": True,
    }
    assert payments[0]["data"]["appliedTo"] == [{"invoiceExternalId": "1042", "amount": "700.00"}]


def test_an_unmappable_rider_fails_alone_and_a_refresh_only_record_fails_nobody():
    broken = invoice_record(key="2001", state="unheardOf")
    intacct = RecordingIntacct(
        records={
            "accounts-receivable/payment": {"880": payment_record()},
            "accounts-receivable/invoice": {"1042": invoice_record(state="unheardOf"), "2001": broken},
        },
        lines={
            "accounts-receivable/payment-detail": [payment_detail("1", "1042", "700.00")],
            "accounts-receivable/invoice-line": [],
        },
    )
    handler = SyncHandler(
        connections={"c1": CONNECTION}, intacct=intacct, flexpoint=RecordingFlexPoint(), clock=lambda: NOW
    )
    group = Group("c1", "payments", [_event("payments", "880")])
    group.rider = Group("c1", "invoices", [_event("invoices", "2001")])

    outcome = handler.process(group)

    assert [e.envelope["key"] for e in outcome.done] == ["880"]
    assert [(e.envelope["key"], f.reason) for e, f in outcome.failed] == [("2001", "mapping_error")]


def test_events_of_a_disconnected_connection_are_dropped_and_its_tokens_forgotten():
    from dataclasses import replace

    intacct = RecordingIntacct(records={}, lines={})
    handler = SyncHandler(
        connections={"c1": replace(CONNECTION, state="disconnected")},
        intacct=intacct,
        flexpoint=RecordingFlexPoint(),
        clock=lambda: NOW,
    )
    group = Group("c1", "payments", [_event("payments", "880")])
    group.rider = Group("c1", "invoices", [_event("invoices", "1")])

    outcome = handler.process(group)

    assert [e.envelope["key"] for e in outcome.dropped] == ["880", "1"] and not outcome.done
    assert intacct.calls == [] and intacct.forgotten == ["c1"]
