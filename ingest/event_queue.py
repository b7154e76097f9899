"""Intacct's event queue as a source of the door: the deliveries Intacct gave up on, fetched back.

A webhook that failed all of Intacct's attempts waits in the company's event queue for 7 days
(BRIEF "Intacct's event queue"). Per connected company this source asks the queue's ``count``
every ``RECONCILE_INTERVAL_SECONDS`` and at once after the receiver reported a gap (a gap that ended
after its last count); when the count is above zero it lists a batch, decodes each event (the body
the webhook would have posted), and publishes it through :mod:`ingest.door` exactly as the
receiver would have: the same checks of the body, the same envelope, the same idempotency key (the
queue's ``eventId``, which Intacct also sends as the webhook's ``Idempotency-Key``) and the same
ledger, so a delivery that also came as a webhook is a duplicate. The batch is acknowledged only
after every event of it is confirmed by RabbitMQ and recorded in the ledger: a crash before the ack
means the batch comes back on a later list, and its events are then duplicates, never losses.

A company whose queue service answers 404 is left alone until its next connect (a connect moves the
connection's ``updated_at`` past the flag's ``since``): one log line, and a flag that ``flexsync
status`` and the console show. Calls go through the Intacct client (tokens, company cap, retries,
breaker); :mod:`clients.intacct.event_queue` knows the paths and shapes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

from marshmallow import ValidationError
from sqlalchemy import Engine, Table, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from broker.publisher import PublishError, PublishTimeout
from clients.intacct.event_queue import Batch, EventQueueService, QueuedEvent, QueueMissing, UnreadableBatch
from ingest.body import BodyLoader
from ingest.door import ConfirmedPublisher, EventDoor
from ingest.gaps import GapStore
from ingest.intake import idempotency_key
from ingest.ledger import DeliveryLookup
from ingest.messages import WebhookBodySchema
from observability.logging import get_logger
from reliability.errors import FlexsyncError
from schemas.catalog import ACTIONS, lookup
from store.models import EventQueueUnavailable
from workers.connections.store import ConnectionRecord

log = get_logger(__name__)

AUTH_SCHEME = "event-queue"
# The header the queue's eventId stands for: the webhook's Idempotency-Key.
_KEY_HEADER = "Idempotency-Key"
# Batches one drain takes at most before it lets the next company have its turn.
MAX_BATCHES = 20
_flags = cast(Table, EventQueueUnavailable.__table__)


class Ledger(Protocol):
    """What the source needs of :class:`ingest.ledger.DeliveryLedger`."""

    def lookup(self, connection_id: str, key: str) -> DeliveryLookup: ...

    def record_many(self, deliveries: Sequence[tuple[str, str, str]]) -> None: ...


class QueueFlags:
    """Connections whose Intacct answered 404 to the queue service, since when."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def mark(self, connection_id: str, since: datetime) -> None:
        values = {"connection_id": connection_id, "since": since}
        insert = postgresql.insert if self._engine.dialect.name == "postgresql" else sqlite.insert
        statement = insert(_flags).values(values)
        statement = statement.on_conflict_do_update(index_elements=["connection_id"], set_={"since": since})
        with self._engine.begin() as conn:
            conn.execute(statement)

    def clear(self, connection_id: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(_flags).where(_flags.c.connection_id == connection_id))

    def all(self) -> dict[str, datetime]:
        with self._engine.connect() as conn:
            return {row.connection_id: row.since for row in conn.execute(select(_flags))}

    @staticmethod
    def holds(since: datetime | None, connection: ConnectionRecord) -> bool:
        """Whether a flag set at ``since`` still holds: the connection did not connect again since."""
        return since is not None and since >= connection.updated_at


@dataclass
class Drain:
    """What one drain of a company's queue did."""

    connection_id: str
    outcome: str  # "empty", "drained", "missing", "failed", "unconfirmed"
    count: int = 0
    published: int = 0
    duplicates: int = 0
    skipped: int = 0
    batches: int = 0
    error: str | None = None


@dataclass(frozen=True)
class _Ready:
    key: str
    event_id: str
    routing_key: str
    envelope: bytes


class EventQueueSource:
    """Drains one company's event queue into the door; acknowledges only what is confirmed."""

    def __init__(
        self,
        *,
        service: EventQueueService,
        ledger: Ledger,
        publisher: ConfirmedPublisher,
        flags: QueueFlags,
        confirm_timeout: float = 30.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_batches: int = MAX_BATCHES,
    ) -> None:
        self._service = service
        self._ledger = ledger
        self._door = EventDoor(publisher)
        self._flags = flags
        self._confirm_timeout = confirm_timeout
        self._now = now
        self._max_batches = max_batches
        self._body = BodyLoader(WebhookBodySchema())

    def drain(self, connection: ConnectionRecord) -> Drain:
        """Count; when above zero, list, publish, confirm, record and ack, batch after batch.

        Raises nothing for a company's own trouble (the outcome says it); a publish that is not
        confirmed leaves its batch unacknowledged.
        """
        result = Drain(connection.connection_id, "empty")
        try:
            result.count = self._service.count(connection)
            while result.count > 0 and result.batches < self._max_batches:
                batch = self._service.list(connection)
                if not batch.events:
                    break
                self._hand_over(connection, batch, result)
                result.batches += 1
                result.outcome = "drained"
                if result.published + result.duplicates + result.skipped >= result.count:
                    break
        except QueueMissing as exc:
            self._flags.mark(connection.connection_id, self._now())
            log.warning(
                "event_queue_unavailable",
                connection_id=connection.connection_id,
                company_id=connection.company_id,
                path=str(exc),
                until="the next connect",
            )
            result.outcome = "missing"
        except (PublishError, FlexsyncError, UnreadableBatch) as exc:
            # Unconfirmed: the batch stays unacknowledged and is listed again on the next tick.
            result.outcome = "unconfirmed" if isinstance(exc, PublishError) else "failed"
            result.error = f"{type(exc).__name__}: {str(exc)[:300]}"
            log.warning(
                "event_queue_drain_failed",
                connection_id=connection.connection_id,
                company_id=connection.company_id,
                error_type=type(exc).__name__,
                error=str(exc)[:300],
            )
        return result

    def _hand_over(self, connection: ConnectionRecord, batch: Batch, result: Drain) -> None:
        ready: dict[str, _Ready] = {}
        for event in batch.events:
            prepared = self._prepare(connection, event)
            if prepared is None:
                result.skipped += 1
            elif (
                prepared.key in ready or self._ledger.lookup(connection.connection_id, prepared.key).event_id
            ):
                result.duplicates += 1
            else:
                ready[prepared.key] = prepared
        sent = [
            (item, self._door.send(item.routing_key, item.envelope, item.event_id)) for item in ready.values()
        ]
        self._confirm([future for _, future in sent])
        # Every event of the batch is in RabbitMQ: recorded, so a webhook copy is a duplicate...
        self._ledger.record_many([(connection.connection_id, item.key, item.event_id) for item, _ in sent])
        result.published += len(sent)
        # ... and only then acknowledged. A crash before this line: the batch comes back.
        if batch.ack_id is not None:
            self._service.ack(connection, batch.ack_id)

    def _confirm(self, futures: list[Future[None]]) -> None:
        for future in futures:
            try:
                future.result(timeout=self._confirm_timeout)
            except FutureTimeout:
                raise PublishTimeout(
                    f"RabbitMQ did not confirm within {self._confirm_timeout:.0f} s"
                ) from None

    def _prepare(self, connection: ConnectionRecord, event: QueuedEvent) -> _Ready | None:
        """The event's envelope, checked as the receiver checks a body; None to skip it (logged)."""
        reason = event.problem
        document: Any = None
        if reason is None:
            try:
                document = json.loads(event.body)
            except (ValueError, UnicodeDecodeError, RecursionError):
                reason = "invalid_json"
        body: dict[str, Any] = {}
        if reason is None:
            if not isinstance(document, dict):
                reason = "invalid_body"
            else:
                try:
                    body = self._body.load(document)
                except ValidationError:
                    reason = "invalid_body"
        if reason is None and body["companyId"] not in (None, connection.company_id):
            reason = "company_mismatch"
        synced = lookup(body["object"]) if reason is None else None
        if reason is None and synced is None:
            reason = "unsupported_object"
        if reason is not None or synced is None:
            # Refused as the receiver would refuse the webhook (a 4xx Intacct does not retry).
            log.warning(
                "event_queue_event_skipped",
                connection_id=connection.connection_id,
                queue_event_id=event.event_id[:200],
                reason=reason,
            )
            return None
        connection_id = connection.connection_id
        key = idempotency_key(connection_id, {_KEY_HEADER: event.event_id}, body, event.body)
        event_id = body["eventId"] or self._door.event_id(connection_id, key)
        action = ACTIONS[body["action"]]
        envelope = self._door.envelope(
            synced,
            connection_id=connection_id,
            company_id=connection.company_id,
            event_id=event_id,
            action=action,
            key=body["key"],
            record_id=body["id"],
            occurred_at=body["occurredAt"],
            received_at=self._now().isoformat().replace("+00:00", "Z"),
            idempotency_key=key,
            auth_scheme=AUTH_SCHEME,
            payload=document,
            payload_json=event.body,
        )
        return _Ready(key, event_id, synced.routing_key(action), envelope)


@dataclass
class EventQueueSchedule:
    """Which companies to count at ``now``: every ``interval``, and at once after a gap.

    The last count of each connection is kept in memory: a restarted process counts every
    company once at start, which is one call each. A count that failed at Intacct waits
    ``interval`` (the breaker and retries already spoke); one whose publish failed is tried
    again on the next tick.
    """

    interval: timedelta
    gaps: GapStore | None = None
    _last: dict[str, datetime] = field(default_factory=dict)

    def due(self, connections: Sequence[ConnectionRecord], now: datetime) -> list[ConnectionRecord]:
        if not connections:
            return []
        lasts = [self._last.get(c.connection_id) for c in connections]
        known = [last for last in lasts if last is not None]
        gaps = []
        if self.gaps is not None and known and len(known) == len(lasts):
            gaps = self.gaps.since(min(known), [c.connection_id for c in connections])
        found = []
        for connection, last in zip(connections, lasts, strict=True):
            mine = (g for g in gaps if g.connection_id in (None, connection.connection_id))
            if last is None or now - last >= self.interval or any(g.ended_at > last for g in mine):
                found.append(connection)
        return found

    def settle(self, connection_id: str, outcome: str, now: datetime) -> None:
        if outcome == "unconfirmed":
            return
        self._last[connection_id] = now


class EventQueueDoor:
    """The source on a schedule: one :meth:`tick` drains every connected company that is due."""

    def __init__(self, source: EventQueueSource, schedule: EventQueueSchedule, flags: QueueFlags) -> None:
        self.source = source
        self.schedule = schedule
        self._flags = flags

    def tick(self, connections: Sequence[ConnectionRecord], now: datetime) -> list[Drain]:
        flagged = self._flags.all()
        live = [c for c in connections if not QueueFlags.holds(flagged.get(c.connection_id), c)]
        results = []
        for connection in self.schedule.due(live, now):
            if connection.connection_id in flagged:
                self._flags.clear(connection.connection_id)  # connected again since: asked anew
            result = self.source.drain(connection)
            self.schedule.settle(connection.connection_id, result.outcome, now)
            results.append(result)
        return results
