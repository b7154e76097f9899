"""A dead letter as operations see it: the envelope, why it failed, where it came from, its id.

Messages reach ``dead-letter`` two ways: a worker parks them with the ``x-flexsync-*`` headers
(``broker.headers``), or the broker dead-letters one that hit a queue's delivery limit (then
only its ``x-death`` headers tell the story). Both are read here into one shape.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from broker import headers as dead_letter

# Headers the broker adds on delivery or dead-lettering; a copy we publish must not carry them.
BROKER_HEADERS = (
    "x-delivery-count",
    "x-death",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-first-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-last-death-exchange",
)

# The message id a kept copy gets when its letter had none (the publisher tracks by id).
SYNTHETIC_ID_PREFIX = "dead-letter-"


def text(value: Any) -> str | None:
    """A header value as text (pika hands some back as bytes)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def parse_instant(value: Any) -> datetime | None:
    """An ISO-8601 text or a datetime as an aware UTC datetime, or None."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    raw = text(value)
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class DeadLetter:
    """One message of the dead-letter queue, decoded; ``id`` is stable while it stays parked."""

    id: str
    body: bytes = field(repr=False)
    properties: Any = field(repr=False)
    headers: dict[str, Any]
    envelope: dict[str, Any] | None
    reason: str
    exception: str | None
    attempts: int | None
    original_routing_key: str | None
    original_queue: str | None
    failed_at: datetime | None

    @property
    def connection_id(self) -> str | None:
        return text(self.envelope.get("connectionId")) if self.envelope else None

    @property
    def resource(self) -> str | None:
        return text(self.envelope.get("resource")) if self.envelope else None

    @property
    def message_id(self) -> str | None:
        return self.properties.message_id

    def body_text(self, limit: int = 4000) -> str:
        if self.envelope is not None:
            return json.dumps(self.envelope, indent=2, sort_keys=True)[:limit]
        return self.body[:limit].decode("utf-8", "replace")

    def summary(self) -> dict[str, Any]:
        """Every field operations look at, ready for JSON."""
        return {
            "id": self.id,
            "reason": self.reason,
            "exception": self.exception,
            "attempts": self.attempts,
            "originalRoutingKey": self.original_routing_key,
            "originalQueue": self.original_queue,
            "failedAt": self.failed_at.isoformat().replace("+00:00", "Z") if self.failed_at else None,
            "connectionId": self.connection_id,
            "resource": self.resource,
            "messageId": self.message_id,
            "envelope": self.envelope if self.envelope is not None else self.body_text(),
        }


def _first_death(headers: dict[str, Any]) -> dict[str, Any]:
    deaths = headers.get("x-death")
    return deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else {}


def read_letter(properties: Any, body: bytes) -> DeadLetter:
    """Decode one delivery from ``dead-letter``; never raises on a malformed message."""
    headers = dict(properties.headers or {})
    death = _first_death(headers)
    routing_keys = death.get("routing-keys") or []
    reason = text(headers.get(dead_letter.REASON)) or text(headers.get("x-first-death-reason")) or "unknown"
    attempts = headers.get(dead_letter.ATTEMPTS, headers.get("x-delivery-count"))
    failed_at = parse_instant(headers.get(dead_letter.FAILED_AT)) or parse_instant(death.get("time"))
    original_queue = text(headers.get(dead_letter.ORIGINAL_QUEUE)) or text(
        headers.get("x-first-death-queue") or death.get("queue")
    )
    original_key = text(headers.get(dead_letter.ORIGINAL_ROUTING_KEY)) or (
        text(routing_keys[0]) if routing_keys else None
    )
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        document = None
    envelope = document if isinstance(document, dict) else None
    message_id = properties.message_id or ""
    if message_id.startswith(SYNTHETIC_ID_PREFIX):
        # A kept copy of a letter that had no message id: it is the same letter, same id.
        message_id = ""
    identity = "\x1f".join(
        [
            message_id,
            failed_at.isoformat() if failed_at else "",
            original_queue or "",
            reason,
        ]
    ).encode()
    letter_id = hashlib.sha256(identity + b"\x1e" + body).hexdigest()[:12]
    return DeadLetter(
        id=letter_id,
        body=body,
        properties=properties,
        headers=headers,
        envelope=envelope,
        reason=reason,
        exception=text(headers.get(dead_letter.EXCEPTION)),
        attempts=attempts if isinstance(attempts, int) else None,
        original_routing_key=original_key,
        original_queue=original_queue,
        failed_at=failed_at,
    )
