"""Intacct's event queue service (BRIEF "Intacct's event queue"): count, list, acknowledge.

Only ``GET /services/delivery/event/count`` is on Sage's own pages; ``list`` and ``ack`` come from a
public SDK that follows Sage's guide. So every path and answer shape is read here and nowhere else,
the base path from ``INTACCT_EVENT_QUEUE_PATH``: a change of Sage's is a change of this module.

- count: ``{"ia::result": {"count": n}}`` (also a bare number, or a one-element list of either);
- list: ``{"ia::result": {"events": [{"eventId", "payload", "context", "eventType"}], "ackId"}}``,
  or ``{"ia::result": []}`` when empty; ``payload`` is base64 of the webhook body, ``context`` base64
  of the ``x-clientcontext`` JSON;
- ack: ``POST`` ``{"ackId": ...}``.

A 404 from any of them means the company's Intacct has no queue service: :class:`QueueMissing`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from clients.intacct.client import IntacctClient
from reliability.errors import FlexsyncError

# The name calls are counted under (metrics, the simulator's stats): one per kind.
OBJECT_PATH = "delivery/event"


class QueueMissing(FlexsyncError, LookupError):
    """The event queue service answered 404 for this company."""

    reason = "event_queue_missing"


class UnreadableBatch(FlexsyncError, ValueError):
    """A list answer whose shape is not the documented one (nothing of it can be trusted)."""

    reason = "event_queue_unreadable"


@dataclass(frozen=True)
class QueuedEvent:
    """One event as the queue holds it, decoded; ``problem`` says why it could not be (else None)."""

    event_id: str
    body: bytes
    context: dict[str, Any] = field(default_factory=dict)
    event_type: str | None = None
    problem: str | None = None


@dataclass(frozen=True)
class Batch:
    """What one ``list`` handed over; acknowledged as a whole by ``ack_id``."""

    events: list[QueuedEvent]
    ack_id: str | None


class EventQueueService:
    """The three calls, through the Intacct client (tokens, per-company cap, retries, breaker).

    ``connection`` is what the client takes (an ``IntacctConnection``; a stored record has it).
    """

    def __init__(self, client: IntacctClient, base_path: str = "services/delivery/event") -> None:
        self._client = client
        base = base_path.strip("/")
        self.count_path = f"{base}/count"
        self.list_path = f"{base}/list"
        self.ack_path = f"{base}/ack"

    def count(self, connection: Any) -> int:
        answer = self._client.service(
            connection, "GET", self.count_path, f"{OBJECT_PATH}:count", missing_ok=True
        )
        if answer is None:
            raise QueueMissing(self.count_path)
        return parse_count(answer)

    def list(self, connection: Any) -> Batch:
        answer = self._client.service(
            connection, "GET", self.list_path, f"{OBJECT_PATH}:list", missing_ok=True
        )
        if answer is None:
            raise QueueMissing(self.list_path)
        return parse_batch(answer)

    def ack(self, connection: Any, ack_id: str) -> None:
        answer = self._client.service(
            connection, "POST", self.ack_path, f"{OBJECT_PATH}:ack", body={"ackId": ack_id}, missing_ok=True
        )
        if answer is None:
            raise QueueMissing(self.ack_path)


def parse_count(answer: dict[str, Any]) -> int:
    result = answer.get("ia::result")
    if isinstance(result, list):
        result = result[0] if result else 0
    if isinstance(result, dict):
        result = result.get("count", result.get("eventCount"))
    if isinstance(result, str) and result.isdigit():
        result = int(result)
    if not isinstance(result, int) or isinstance(result, bool) or result < 0:
        raise UnreadableBatch(f"the event queue's count answer has no count: {type(result).__name__}")
    return result


def parse_batch(answer: dict[str, Any]) -> Batch:
    result = answer.get("ia::result")
    if result in ([], None, {}):
        return Batch([], None)
    if isinstance(result, list) and len(result) == 1 and isinstance(result[0], dict):
        result = result[0]
    if not isinstance(result, dict) or not isinstance(result.get("events", []), list):
        raise UnreadableBatch("the event queue's list answer is not {events, ackId}")
    ack_id = result.get("ackId")
    events = [decode(raw) for raw in result.get("events", [])]
    if events and (not isinstance(ack_id, str) or not ack_id):
        raise UnreadableBatch("the event queue handed over events without an ackId")
    return Batch(events, ack_id if isinstance(ack_id, str) else None)


def decode(raw: Any) -> QueuedEvent:
    """One listed event: its body (the webhook's raw bytes) and its context, or why not."""
    if not isinstance(raw, dict):
        return QueuedEvent("", b"", problem="not_an_object")
    event_id = raw.get("eventId")
    event_id = str(event_id).strip() if isinstance(event_id, (str, int)) else ""
    event_type = raw.get("eventType") if isinstance(raw.get("eventType"), str) else None
    if not event_id:
        return QueuedEvent("", b"", event_type=event_type, problem="no_event_id")
    try:
        body = _b64(raw.get("payload"))
    except ValueError:
        return QueuedEvent(event_id, b"", event_type=event_type, problem="bad_payload")
    context: dict[str, Any] = {}
    if raw.get("context"):
        try:
            decoded = json.loads(_b64(raw["context"]))
            context = decoded if isinstance(decoded, dict) else {}
        except ValueError:
            context = {}  # unsigned and informative only: an unreadable context costs nothing
    return QueuedEvent(event_id, body, context, event_type)


def _b64(value: Any) -> bytes:
    if not isinstance(value, str) or not value:
        raise ValueError("not base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        # Some senders use the URL-safe alphabet or drop the padding.
        try:
            return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError) as exc:
            raise ValueError("not base64") from exc
