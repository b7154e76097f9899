"""The event queue as a source of the door, with fakes for Intacct and the broker: decoding,
acknowledgement only after every confirm, the 404 flag until the next connect, ``off``."""

from __future__ import annotations

import base64
import json
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta

import pytest

from clients.intacct.event_queue import Batch, QueuedEvent, QueueMissing, decode, parse_batch, parse_count
from config.settings import SettingsError, load_settings
from ingest.door import EventDoor
from ingest.event_queue import EventQueueDoor, EventQueueSchedule, EventQueueSource, QueueFlags
from ingest.gaps import RECEIVER_5XX, GapStore
from ingest.ledger import DeliveryLookup
from store.db import upgrade
from tests.databases import database_url, engine  # noqa: F401 - fixtures
from workers.connections.store import ConnectionRecord

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
COMPANY = "ACME-CO"


def connection(
    updated_at: datetime = T0 - timedelta(days=1), connection_id: str = "conn-1"
) -> ConnectionRecord:
    return ConnectionRecord(
        connection_id=connection_id,
        account_id="acct-1",
        company_id=COMPANY,
        entity_id=None,
        user_id="ws",
        state="connected",
        webhook_secrets=(),
        created_at=T0 - timedelta(days=2),
        updated_at=updated_at,
    )


def body(key: str, action: str = "set", obj: str = "ARINVOICE", **extra) -> bytes:
    document = {"object": obj, "action": action, "key": key, "companyId": COMPANY, **extra}
    return json.dumps(document).encode()


def listed(event_id: str, raw: bytes, context: dict | None = None) -> dict:
    return {
        "eventId": event_id,
        "eventType": "After Set",
        "payload": base64.b64encode(raw).decode(),
        "context": base64.b64encode(json.dumps(context or {"COMPANY": COMPANY}).encode()).decode(),
    }


class FakeService:
    """Intacct's queue: batches handed out until acknowledged; every call noted."""

    def __init__(self, *events: dict, missing: bool = False) -> None:
        self.events = list(events)
        self.missing = missing
        self.calls: list[str] = []
        self.acked: list[str] = []

    def count(self, _connection) -> int:
        self.calls.append("count")
        if self.missing:
            raise QueueMissing("services/delivery/event/count")
        return len(self.events)

    def list(self, _connection) -> Batch:
        self.calls.append("list")
        return parse_batch(
            {"ia::result": {"events": self.events, "ackId": "ack-1"}} if self.events else {"ia::result": []}
        )

    def ack(self, _connection, ack_id: str) -> None:
        self.calls.append("ack")
        self.acked.append(ack_id)
        self.events = []


class FakeLedger:
    def __init__(self, known: dict[str, str] | None = None) -> None:
        self.known = dict(known or {})
        self.recorded: list[tuple[str, str, str]] = []

    def lookup(self, connection_id: str, key: str) -> DeliveryLookup:
        return DeliveryLookup(self.known.get(key), None)

    def record_many(self, deliveries) -> None:
        for connection_id, key, event_id in deliveries:
            self.recorded.append((connection_id, key, event_id))
            self.known[key] = event_id


class FakePublisher:
    """Publishes into futures the test resolves (or leaves unresolved: no confirm)."""

    def __init__(self, confirm: bool = True, nack: bool = False) -> None:
        self.confirm, self.nack = confirm, nack
        self.sent: list[tuple[str, dict, str]] = []

    def publish(self, routing_key, body, *, message_id, headers=None) -> Future[None]:
        self.sent.append((routing_key, json.loads(body), message_id))
        future: Future[None] = Future()
        if self.nack:
            from broker.publisher import PublishRejected

            future.set_exception(PublishRejected("nacked"))
        elif self.confirm:
            future.set_result(None)
        return future

    def publish_and_wait(self, *args, **kwargs):  # pragma: no cover - not used by this source
        raise AssertionError("the queue pipelines its confirms")


class FakeFlags:
    def __init__(self) -> None:
        self.marked: dict[str, datetime] = {}

    def mark(self, connection_id: str, since: datetime) -> None:
        self.marked[connection_id] = since

    def all(self) -> dict[str, datetime]:
        return dict(self.marked)

    def clear(self, connection_id: str) -> None:
        self.marked.pop(connection_id, None)


def source(service, ledger=None, publisher=None, flags=None, **kwargs) -> EventQueueSource:
    return EventQueueSource(
        service=service,
        ledger=ledger or FakeLedger(),
        publisher=publisher or FakePublisher(),
        flags=flags or FakeFlags(),
        now=lambda: T0,
        **kwargs,
    )


# -- decoding ---------------------------------------------------------------------------------


def test_decode_gives_the_webhook_body_and_its_context():
    raw = body("42")
    event = decode(listed("ev-1", raw, {"COMPANY": COMPANY, "EVENT": "set"}))
    assert event == QueuedEvent("ev-1", raw, {"COMPANY": COMPANY, "EVENT": "set"}, "After Set")
    # URL-safe base64 without padding is read too; an unreadable context costs nothing.
    urlsafe = {
        "eventId": "ev-2",
        "payload": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "context": "%%%",
    }
    assert decode(urlsafe).body == raw and decode(urlsafe).context == {}
    assert decode({"eventId": "ev-3", "payload": "not base64!"}).problem == "bad_payload"
    assert decode({"payload": "e30="}).problem == "no_event_id"
    assert decode("nonsense").problem == "not_an_object"


def test_answer_shapes():
    assert parse_count({"ia::result": {"count": 3}}) == 3
    assert parse_count({"ia::result": [{"count": "2"}]}) == 2
    assert parse_count({"ia::result": 0}) == 0
    assert parse_batch({"ia::result": []}) == Batch([], None)
    with pytest.raises(ValueError):
        parse_count({"ia::result": {"count": -1}})
    with pytest.raises(ValueError):
        parse_batch({"ia::result": {"events": [listed("ev-1", body("1"))]}})  # no ackId


# -- publishing and acknowledging -------------------------------------------------------------


def test_each_event_goes_through_the_door_as_a_webhook_would_and_the_batch_is_acked_after():
    service = FakeService(listed("ev-1", body("1")), listed("ev-2", body("2", action="delete")))
    ledger, publisher = FakeLedger(), FakePublisher()
    result = source(service, ledger, publisher).drain(connection())
    assert (result.outcome, result.published, result.duplicates) == ("drained", 2, 0)
    assert service.calls == ["count", "list", "ack"] and service.acked == ["ack-1"]
    # The same event id the receiver gives the webhook whose Idempotency-Key is the eventId.
    assert [m for _, _, m in publisher.sent] == [
        EventDoor.event_id("conn-1", "ev-1"),
        EventDoor.event_id("conn-1", "ev-2"),
    ]
    routing, envelope, _ = publisher.sent[1]
    assert (
        envelope["action"] == "delete" and envelope["key"] == "2" and envelope["authScheme"] == "event-queue"
    )
    assert envelope["idempotencyKey"] == "ev-2" and routing.endswith(".delete")
    assert [key for _, key, _ in ledger.recorded] == ["ev-1", "ev-2"]


def test_an_event_that_came_as_a_webhook_too_is_a_duplicate_and_still_acknowledged():
    service = FakeService(listed("ev-1", body("1")), listed("ev-2", body("2")))
    ledger = FakeLedger({"ev-1": EventDoor.event_id("conn-1", "ev-1")})
    publisher = FakePublisher()
    result = source(service, ledger, publisher).drain(connection())
    assert (result.published, result.duplicates) == (1, 1)
    assert len(publisher.sent) == 1 and service.acked == ["ack-1"]


def test_nothing_is_acknowledged_before_every_event_is_confirmed():
    for publisher in (FakePublisher(confirm=False), FakePublisher(nack=True)):
        service = FakeService(listed("ev-1", body("1")), listed("ev-2", body("2")))
        ledger = FakeLedger()
        result = source(service, ledger, publisher, confirm_timeout=0.05).drain(connection())
        assert result.outcome == "unconfirmed"
        assert "ack" not in service.calls and ledger.recorded == []
        # The batch comes back; published once more, it is acknowledged (duplicates, not losses).
        again = source(service, ledger, FakePublisher()).drain(connection())
        assert (again.outcome, again.published) == ("drained", 2) and service.acked == ["ack-1"]


def test_an_event_the_receiver_would_refuse_is_skipped_not_blocking_the_queue():
    service = FakeService(
        listed("ev-1", body("1", obj="PODOCUMENT")),
        listed("ev-2", b"[1, 2]"),
        {"eventId": "ev-3", "payload": "???"},
        listed("ev-4", body("4", companyId="OTHER")),
        listed("ev-5", body("5")),
    )
    result = source(service).drain(connection())
    assert (result.published, result.skipped) == (1, 4) and service.acked == ["ack-1"]


def test_an_idle_company_costs_one_count():
    service = FakeService()
    assert source(service).drain(connection()).outcome == "empty"
    assert service.calls == ["count"]


# -- the 404 flag, the schedule and `off` ------------------------------------------------------


def test_a_404_flags_the_company_until_its_next_connect():
    service, flags = FakeService(missing=True), FakeFlags()
    door = EventQueueDoor(source(service, flags=flags), EventQueueSchedule(timedelta(minutes=15)), flags)
    [drain] = door.tick([connection()], T0)
    assert drain.outcome == "missing" and flags.marked == {"conn-1": T0}
    service.missing = False
    assert door.tick([connection()], T0 + timedelta(days=1)) == [], "left alone"
    reconnected = connection(updated_at=T0 + timedelta(hours=1))
    [drain] = door.tick([reconnected], T0 + timedelta(days=1))
    assert drain.outcome == "empty" and flags.marked == {}


def test_flags_are_stored(engine):  # noqa: F811
    upgrade(engine)
    flags = QueueFlags(engine)
    flags.mark("conn-1", T0)
    flags.mark("conn-1", T0 + timedelta(seconds=1))
    assert flags.all() == {"conn-1": T0 + timedelta(seconds=1)}
    assert QueueFlags.holds(flags.all()["conn-1"], connection())
    assert not QueueFlags.holds(flags.all()["conn-1"], connection(updated_at=T0 + timedelta(seconds=2)))
    flags.clear("conn-1")
    assert flags.all() == {}


def test_counted_every_interval_and_at_once_after_a_gap(engine):  # noqa: F811
    upgrade(engine)
    gaps = GapStore(engine)
    schedule = EventQueueSchedule(timedelta(minutes=15), gaps)
    one, two = connection(), connection(connection_id="conn-2")
    assert schedule.due([one, two], T0) == [one, two]
    for c in (one, two):
        schedule.settle(c.connection_id, "empty", T0)
    assert schedule.due([one, two], T0 + timedelta(minutes=1)) == []
    gaps.record(RECEIVER_5XX, "conn-2", T0 + timedelta(minutes=1), T0 + timedelta(minutes=2))
    assert schedule.due([one, two], T0 + timedelta(minutes=3)) == [two]
    schedule.settle("conn-2", "empty", T0 + timedelta(minutes=3))
    assert schedule.due([one, two], T0 + timedelta(minutes=4)) == []
    schedule.settle("conn-1", "unconfirmed", T0 + timedelta(minutes=15))  # tried again next tick
    assert schedule.due([one, two], T0 + timedelta(minutes=15)) == [one]


def test_off_turns_the_door_off_and_anything_else_is_refused():
    assert load_settings({"FLEXSYNC_ENV": "test"}).event_queue_on
    assert not load_settings({"FLEXSYNC_ENV": "test", "INTACCT_EVENT_QUEUE": "OFF"}).event_queue_on
    with pytest.raises(SettingsError, match="INTACCT_EVENT_QUEUE"):
        load_settings({"FLEXSYNC_ENV": "test", "INTACCT_EVENT_QUEUE": "maybe"})
    assert (
        load_settings({"FLEXSYNC_ENV": "test", "INTACCT_EVENT_QUEUE_PATH": "/x/y/"}).intacct_event_queue_path
        == "x/y"
    )
    with pytest.raises(SettingsError, match="INTACCT_EVENT_QUEUE_PATH"):
        load_settings({"FLEXSYNC_ENV": "test", "INTACCT_EVENT_QUEUE_PATH": "https://evil/x?y"})
