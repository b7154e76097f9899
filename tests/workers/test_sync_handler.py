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


class KeyCheckingIntacct(RecordingIntacct):
    """Checks keys as the real client does: a bad one refuses the whole call."""

    def get_many(self, connection: Any, rest_path: str, keys: list[str]):
        from clients.intacct.client import _checked_key

        return super().get_many(connection, rest_path, [_checked_key(k) for k in keys])


def _delete(key: str, occurred_at: str | None, received_at: str = "2026-11-24T18:00:05Z") -> Event:
    envelope = {
        "connectionId": "c1",
        "resource": "invoices",
        "key": key,
        "action": "delete",
        "occurredAt": occurred_at,
        "receivedAt": received_at,
    }
    return Event(envelope, message=None, queue="sync.ar", received=0.0)


def test_a_bad_key_or_occurred_at_fails_only_its_own_event_not_the_group():
    """Issue 30 #2: a key with "," "/" or only spaces, or an occurredAt in Intacct's own date
    format, dead-lettered every event of the group (up to 500)."""
    intacct = KeyCheckingIntacct(
        records={"accounts-receivable/invoice": {"2001": invoice_record(key="2001", id="INV-2001")}},
        lines={"accounts-receivable/invoice-line": [invoice_line("21", 1, "10", invoice={"key": "2001"})]},
    )
    flexpoint = RecordingFlexPoint()
    handler = SyncHandler(
        connections={"c1": CONNECTION}, intacct=intacct, flexpoint=flexpoint, clock=lambda: NOW
    )
    deleted = _delete("1042", "11/24/2026 10:00:00")  # Intacct's rendering of WHENMODIFIED
    unreadable = _delete("1043", "yesterday-ish")
    good = _delete("2001", None)
    bad = [_delete(key, None) for key in ("a,b", "a/b", "   ")]
    outcome = handler.process(Group("c1", "invoices", [deleted, unreadable, good, *bad]))
    assert {e.envelope["key"] for e in outcome.done} == {"1042", "1043", "2001"}
    assert sorted(e.envelope["key"] for e, _ in outcome.failed) == sorted(["a,b", "a/b", "   "])
    assert all(not failure.transient for _, failure in outcome.failed)
    [(_, _, items)] = flexpoint.upserts
    versions = {item["externalId"]: item["sourceVersion"] for item in items if item.get("deleted")}
    # Intacct's local time (zone unknown) is never placed before the moment the delete was seen.
    assert versions == {"1042": "2026-11-24T18:00:05Z", "1043": "2026-11-24T18:00:05Z"}


def test_a_deletion_version_reads_intacct_date_formats():
    from workers.sync.groups import deletion_version

    seen = "2026-11-24T09:00:05Z"
    assert deletion_version("11/24/2026 10:00:00", seen) == datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    assert deletion_version("24.11.2026 10:00", seen) == datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    assert deletion_version("2026/11/24 10:00:00 PM", seen) == datetime(2026, 11, 24, 22, 0, tzinfo=UTC)
    assert deletion_version("11/24/2026", seen) == datetime(2026, 11, 24, 9, 0, 5, tzinfo=UTC)
    assert deletion_version("2026-11-24T08:00:00+01:00", seen) == datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
    # Day and month both under 13, or not a date at all: the moment it was observed.
    assert deletion_version("03/04/2026 10:00:00", seen) == datetime(2026, 11, 24, 9, 0, 5, tzinfo=UTC)
    assert deletion_version("never", seen) == datetime(2026, 11, 24, 9, 0, 5, tzinfo=UTC)
    assert deletion_version("never", None) is None


def test_a_payment_reversed_in_the_second_it_was_applied_brings_its_invoice_due_back(flexpoint):
    """Issue 28: Intacct's clock has one-second resolution, so an invoice posted, paid down and
    its payment reversed within one second is read due 1250, then 550, then 1250 again, all at one
    sourceVersion. The last refresh has the first upsert's very body; it must be applied (FlexPoint
    applies an equal version with other data), not answered as a replay of the first."""
    from clients.flexpoint import FlexPointClient

    posted = invoice_record(
        state="posted",
        paymentInformation={"totalTxnAmountPaid": "0.00"},
        totalTxnAmountDue="1250.00",
    )
    intacct = RecordingIntacct(
        records={"accounts-receivable/invoice": {"1042": posted}, "accounts-receivable/payment": {}},
        lines={
            "accounts-receivable/invoice-line": [invoice_line("11", 1, "1250")],
            "accounts-receivable/payment-detail": [payment_detail("1", "1042", "700.00")],
        },
    )
    with FlexPointClient(flexpoint.url, flexpoint.config.token) as client:
        handler = SyncHandler(
            connections={"c1": CONNECTION}, intacct=intacct, flexpoint=client, clock=lambda: NOW
        )

        def amount_due() -> str:
            return client.get_record(CONNECTION.account_id, "invoices", "1042")["data"]["amountDue"]

        assert handler.process(Group("c1", "invoices", [_event("invoices", "1042")])).done
        assert amount_due() == "1250.00"

        intacct.records["accounts-receivable/payment"]["880"] = payment_record()
        intacct.records["accounts-receivable/invoice"]["1042"] = invoice_record(
            paymentInformation={"totalTxnAmountPaid": "700.00"}, totalTxnAmountDue="550.00"
        )
        assert handler.process(Group("c1", "payments", [_event("payments", "880")])).done
        assert amount_due() == "550.00"

        # Reversed: the original shows reversed (its details still name the invoice), and the
        # invoice is due in full again, at the version it had before it was paid.
        intacct.records["accounts-receivable/payment"]["880"] = payment_record(state="reversed")
        intacct.records["accounts-receivable/invoice"]["1042"] = posted
        assert handler.process(Group("c1", "payments", [_event("payments", "880")])).done
        assert amount_due() == "1250.00"
