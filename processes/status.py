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

from sqlalchemy import Engine, case, func, select

from broker.admin import connect, queue_counts
from broker.topology import Topology, queue_kind
from store.models import (
    BackfillCheckpoint,
    BackfillRun,
    Connection,
    EventQueueUnavailable,
    ReconcileWatermark,
    WebhookDelivery,
)
from workers.deadletters.store import DeadLetterStore, LetterQuery


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
    """Every connection with its newest confirmed webhook and its oldest reconciliation watermark."""
    last_event = (
        select(WebhookDelivery.connection_id, func.max(WebhookDelivery.confirmed_at).label("last"))
        .where(WebhookDelivery.state == "confirmed")
        .group_by(WebhookDelivery.connection_id)
        .subquery()
    )
    watermark = (
        select(
            ReconcileWatermark.connection_id,
            func.min(ReconcileWatermark.modified_since).label("mark"),
            # A resource that never swept successfully has no watermark; MIN would skip it.
            func.sum(case((ReconcileWatermark.modified_since.is_(None), 1), else_=0)).label("unswept"),
        )
        .group_by(ReconcileWatermark.connection_id)
        .subquery()
    )
    query = (
        select(Connection, last_event.c.last, watermark.c.mark, watermark.c.unswept)
        .outerjoin(last_event, last_event.c.connection_id == Connection.connection_id)
        .outerjoin(watermark, watermark.c.connection_id == Connection.connection_id)
        .order_by(Connection.created_at, Connection.connection_id)
    )
    imported = (
        select(BackfillCheckpoint.connection_id, func.sum(BackfillCheckpoint.imported).label("done"))
        .group_by(BackfillCheckpoint.connection_id)
        .subquery()
    )
    query = (
        query.add_columns(BackfillRun.state.label("backfill_state"), BackfillRun.resume_at, imported.c.done)
        .outerjoin(BackfillRun, BackfillRun.connection_id == Connection.connection_id)
        .outerjoin(imported, imported.c.connection_id == Connection.connection_id)
    )
    # A flag set before the connection's last connect no longer holds (ingest.event_queue).
    query = query.add_columns(EventQueueUnavailable.since.label("queue_missing")).outerjoin(
        EventQueueUnavailable,
        (EventQueueUnavailable.connection_id == Connection.connection_id)
        & (EventQueueUnavailable.since >= Connection.updated_at),
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        ConnectionStatus(
            connection_id=row.connection_id,
            account_id=row.account_id,
            company_id=row.company_id,
            state=row.state,
            last_event=_aware(row.last),
            reconciled_to=_aware(row.created_at) if row.unswept else _aware(row.mark),
            backfill=_backfill(row.backfill_state, row.done, row.resume_at, clock()),
            tenant_id=row.intacct_tenant_id,
            event_queue_missing_since=_aware(row.queue_missing),
        )
        for row in rows
    ]


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
