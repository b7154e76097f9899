"""Each company's event queue: the webhook deliveries Intacct gave up on, kept for 7 days.

Sage's "Platform Trigger queue event services" as a public SDK following Sage's guide describes
them: a delivery that failed every attempt waits in the company's queue; a client counts it,
lists a batch (each event's ``payload`` is base64 of the body the webhook would have posted, its
``context`` base64 of the ``x-clientcontext`` JSON) under an ``ackId``, and acknowledges the batch.
A batch not acknowledged comes back on a later list. Kept 7 days times the time scale, measured on
the simulator's clock. A switch per company makes the service answer 404, as an Intacct without
the queue service does.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RETENTION_SECONDS = 7 * 24 * 3600.0
BATCH_SIZE = 100


@dataclass(frozen=True)
class QueuedEvent:
    event_id: str
    body: bytes
    context: dict[str, Any]
    event_type: str
    queued_at: float
    sequence: int

    def listed(self) -> dict[str, Any]:
        return {
            "eventId": self.event_id,
            "eventType": self.event_type,
            "payload": base64.b64encode(self.body).decode(),
            "context": base64.b64encode(json.dumps(self.context).encode()).decode(),
        }


class EventQueues:
    """Every company's queue, in memory (as the webhook retries are): thread-safe."""

    def __init__(
        self, *, clock: Callable[[], float], time_scale: float, batch_size: int = BATCH_SIZE
    ) -> None:
        self._clock = clock
        self._retention = RETENTION_SECONDS * time_scale
        self._batch_size = batch_size
        self._lock = threading.Lock()
        self._queues: dict[str, dict[str, QueuedEvent]] = {}
        self._batches: dict[str, tuple[str, tuple[str, ...]]] = {}  # ackId -> (company, event ids)
        self._missing: set[str] = set()
        self._sequence = itertools.count()

    def put(
        self, company_id: str, event_id: str, body: bytes, context: dict[str, Any], event_type: str
    ) -> None:
        """Keep a delivery that failed all its attempts (a second copy of one event is one event)."""
        with self._lock:
            queue = self._queues.setdefault(company_id, {})
            if event_id not in queue:
                queue[event_id] = QueuedEvent(
                    event_id, body, context, event_type, self._clock(), next(self._sequence)
                )

    def available(self, company_id: str) -> bool:
        with self._lock:
            return company_id not in self._missing

    def set_available(self, company_id: str, available: bool) -> None:
        with self._lock:
            (self._missing.discard if available else self._missing.add)(company_id)

    def count(self, company_id: str) -> int:
        with self._lock:
            return len(self._live(company_id))

    def list(self, company_id: str) -> tuple[list[dict[str, Any]], str | None]:
        """The oldest events (up to a batch) and the ackId acknowledging exactly them.

        Listing takes nothing out: until acknowledged, the same events come back on the next list.
        """
        with self._lock:
            events = sorted(self._live(company_id), key=lambda e: e.sequence)[: self._batch_size]
            if not events:
                return [], None
            ack_id = uuid.uuid4().hex
            self._batches[ack_id] = (company_id, tuple(e.event_id for e in events))
            return [e.listed() for e in events], ack_id

    def ack(self, company_id: str, ack_id: str) -> bool:
        """Remove a listed batch's events; False for an ackId this company never got."""
        with self._lock:
            batch = self._batches.get(ack_id)
            if batch is None or batch[0] != company_id:
                return False
            del self._batches[ack_id]
            queue = self._queues.get(company_id, {})
            for event_id in batch[1]:
                queue.pop(event_id, None)
            return True

    def view(self, company_id: str) -> dict[str, Any]:
        with self._lock:
            live = self._live(company_id)
            return {
                "available": company_id not in self._missing,
                "count": len(live),
                "events": [e.listed() for e in sorted(live, key=lambda e: e.sequence)],
            }

    def _live(self, company_id: str) -> list[QueuedEvent]:
        # Called with the lock held: events older than the retention are dropped here.
        queue = self._queues.get(company_id, {})
        cutoff = self._clock() - self._retention
        for event_id in [e.event_id for e in queue.values() if e.queued_at < cutoff]:
            del queue[event_id]
        return list(queue.values())
