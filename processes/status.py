"""What ``flexsync status`` gathers: queues, dead letters (stored, and not yet stored), connections.

Without the management plugin the broker tells a client only a queue's ready messages and its
consumers (passive declare); the rate is therefore the net change of depth between two samples.
Nothing here consumes a message: dead letters are counted from the table, and those not yet
stored are the broker's own count of the ``dead-letter`` queue.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from broker.admin import connect, queue_counts
from broker.topology import Topology, queue_kind
from ingest.event_queue import QueueFlags
from ingest.ledger import DeliveryLedger
from workers.backfill.store import BackfillStore
from workers.connections.store import connections_without_secrets
from workers.deadletters.store import DeadLetterStore, LetterQuery
from workers.reconcile.store import WatermarkStore


@dataclass(frozen=True)
class QueueStatus:
    name: str
    kind: str
    depth: int
    consumers: int
    rate: float | None  # net messages/s (positive: filling up), None when sampled once


@dataclass
class DeadCounts:
    total: int = 0
    not_stored: int = 0  # still in the dead-letter queue (the broker's count), not yet in the table
    by_reason: collections.Counter[str] = field(default_factory=collections.Counter)
    by_resource: collections.Counter[str] = field(default_factory=collections.Counter)


@dataclass(frozen=True)
class ConnectionStatus:
    connection_id: str
    account_id: str
    company_id: str
    state: str
    last_event: datetime | None
    reconciled_to: datetime | None
    backfill: str = "-"  # the historical import: its state, and records imported so far
    tenant_id: str | None = None  # the Sage tenant pinned by its first Sage-signed webhook
    # When Intacct's event queue service answered 404 (left alone until the next connect); None:
    # the queue is drained (or was never asked).
    event_queue_missing_since: datetime | None = None

    @property
    def event_queue(self) -> str:
        """The event queue door for this connection, in a word or two."""
        if self.event_queue_missing_since is None:
            return "on"
        return f"unavailable (404 since {self.event_queue_missing_since.strftime('%Y-%m-%dT%H:%M:%SZ')})"

    def lag(self, now: datetime) -> timedelta | None:
        """How far FlexPoint may be behind Intacct: changes older than the connection's oldest
        reconciliation watermark are known to be synced; None before the first sweep."""
        return None if self.reconciled_to is None else max(timedelta(0), now - self.reconciled_to)


def queue_status(amqp_url: str, topology: Topology, *, interval: float) -> list[QueueStatus]:
    """Depth and consumers of every queue; with ``interval`` > 0, sampled twice for a rate."""
    connection = connect(amqp_url)
    try:
        channel = connection.channel()
        names = [queue.name for queue in topology.queues]
        first = {name: queue_counts(channel, name) for name in names}
        if interval > 0:
            connection.sleep(interval)
            second = {name: queue_counts(channel, name) for name in names}
        else:
            second = first
    finally:
        if connection.is_open:
            connection.close()
    return [
        QueueStatus(
            name=queue.name,
            kind=queue_kind(queue),
            depth=second[queue.name][0],
            consumers=second[queue.name][1],
            rate=(second[queue.name][0] - first[queue.name][0]) / interval if interval > 0 else None,
        )
        for queue in topology.queues
    ]


def dead_counts(store: DeadLetterStore, waiting: int = 0) -> DeadCounts:
    """Stored dead letters by reason and by resource, plus ``waiting``: the messages the broker
    counts in ``dead-letter`` (passive declare), letters no storing consumer took yet. Their
    reasons are not known until they are stored, so they count in the total only."""
    stored = store.counts(LetterQuery())
    return DeadCounts(stored.total + waiting, waiting, stored.by_reason, stored.by_resource)


def connection_status(engine: Engine, *, clock: Callable[[], float] = time.time) -> list[ConnectionStatus]:
    """Every connection with its newest confirmed webhook, its oldest reconciliation watermark,
    its historical import and its event queue: each capability answers from its own tables."""
    connections = connections_without_secrets(engine)
    last_events = DeliveryLedger(engine).last_events()
    marks = WatermarkStore(engine).lowest_marks()
    imports = BackfillStore(engine).progress_by_connection()
    queue_flags = QueueFlags(engine).all()
    now = clock()
    statuses = []
    for connection in connections:
        cid = connection.connection_id
        mark, unswept = marks.get(cid, (None, 0))
        state, done, resume_at = imports.get(cid, (None, 0, None))
        flagged = queue_flags.get(cid)
        statuses.append(
            ConnectionStatus(
                connection_id=cid,
                account_id=connection.account_id,
                company_id=connection.company_id,
                state=connection.state,
                last_event=_aware(last_events.get(cid)),
                reconciled_to=_aware(connection.created_at) if unswept else _aware(mark),
                backfill=_backfill(state, done, resume_at, now),
                tenant_id=connection.tenant_id,
                # A flag set before the connection's last connect no longer holds (ingest.event_queue).
                event_queue_missing_since=_aware(flagged) if QueueFlags.holds(flagged, connection) else None,
            )
        )
    return statuses


def _backfill(state: str | None, done: int | None, resume_at: float | None, now: float) -> str:
    if state is None:
        return "-"
    text = f"{state} ({done or 0:,} records)"
    if state == "failed" and resume_at is not None:
        text += f", resumes in {max(0, round((resume_at - now) / 60))} min"
    return text


def _aware(value: datetime | None) -> datetime | None:
    # Aggregates bypass the UTCDateTime column type: SQLite hands back naive values or text.
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
