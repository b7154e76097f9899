"""Reconciliation as a source of events: changes it found, put into the sync by the one door.

A reconciliation event is an ordinary event (:mod:`ingest.door`: the same envelope, id namespace
and confirmed publish as a webhook's) with ``authScheme`` ``reconcile``: the sync workers fetch the
record's latest state and upsert it, or tombstone it when Intacct answers 404, exactly as for a
webhook.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime

from broker.publisher import PublishTimeout
from ingest.door import ConfirmedPublisher, EventDoor
from schemas.catalog import SyncedObject
from schemas.mappings.values import utc_timestamp
from workers.connections.store import ConnectionRecord

AUTH_SCHEME = "reconcile"
_WEBHOOK_ACTIONS = {"update": "set", "delete": "delete"}


@dataclass(frozen=True)
class Change:
    """One record to bring to Intacct's state: ``update`` (fetch it) or ``delete`` (it is gone).

    ``version`` is the record's modification time for an update and the time the deletion was
    observed for a delete: the tombstone's sourceVersion.
    """

    key: str
    action: str
    version: datetime


def envelope(
    connection: ConnectionRecord, synced: SyncedObject, change: Change, received_at: datetime
) -> tuple[str, bytes]:
    """The event's id and JSON body; the id is stable for one version of one record."""
    version = utc_timestamp(change.version)
    idempotency_key = f"reconcile:{synced.resource}:{change.key}:{change.action}:{version}"
    event_id = EventDoor.event_id(connection.connection_id, idempotency_key)
    body = EventDoor.envelope(
        synced,
        connection_id=connection.connection_id,
        company_id=connection.company_id,
        event_id=event_id,
        action=change.action,
        key=change.key,
        record_id=None,
        occurred_at=version,
        received_at=utc_timestamp(received_at),
        idempotency_key=idempotency_key,
        auth_scheme=AUTH_SCHEME,
        # No webhook body exists: this says what a trigger would have said, and who said it.
        payload={
            "object": synced.intacct_object,
            "action": _WEBHOOK_ACTIONS[change.action],
            "key": change.key,
            "companyId": connection.company_id,
            "occurredAt": version,
            "source": AUTH_SCHEME,
        },
    )
    return event_id, body


class EventSender:
    """Publishes changes with pipelined confirms; returns only once the broker confirmed them all.

    Changes go out in chunks of ``chunk`` messages; a chunk not confirmed within
    ``confirm_timeout`` seconds, or any refusal, raises :class:`PublishError` and the caller
    must not advance its watermark.
    """

    def __init__(
        self,
        publisher: ConfirmedPublisher,
        *,
        chunk: int = 1000,
        confirm_timeout: float = 30.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._door = EventDoor(publisher)
        self._chunk = chunk
        self._confirm_timeout = confirm_timeout
        self._clock = clock

    def send(self, connection: ConnectionRecord, synced: SyncedObject, changes: Sequence[Change]) -> int:
        """Publish every change persistently and wait for all confirms; how many were published."""
        for start in range(0, len(changes), self._chunk):
            futures = [
                self._publish(connection, synced, change) for change in changes[start : start + self._chunk]
            ]
            for future in futures:
                try:
                    future.result(timeout=self._confirm_timeout)
                except FutureTimeout:
                    raise PublishTimeout(
                        f"RabbitMQ did not confirm within {self._confirm_timeout:.0f} s"
                    ) from None
        return len(changes)

    def _publish(self, connection: ConnectionRecord, synced: SyncedObject, change: Change) -> Future[None]:
        event_id, body = envelope(connection, synced, change, self._clock())
        return self._door.send(synced.routing_key(change.action), body, event_id)
