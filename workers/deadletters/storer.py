"""The storing consumer: takes each message of ``dead-letter`` into the ``dead_letters`` table.

It acknowledges a batch only after the transaction that stored it committed, so a consumer
killed mid-way loses nothing: the unacknowledged messages are delivered again and, being the
same letters (same identity, workers/deadletters/letters.py), stored once. It runs continuously as a thread of
the ``console`` process, and every dead-letter command drains the queue the same way before it
reads the table, so the CLI works whether or not the console runs.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from pika.exceptions import AMQPError

from broker.admin import connect, queue_counts
from broker.topology import DEAD_LETTER_QUEUE_NAME
from store.models import DeadLetterRecord
from workers.deadletters.letters import DeadLetter, read_letter
from workers.deadletters.store import STORED, DeadLetterStore

log = structlog.get_logger(__name__)

_PROPERTY_NAMES = ("content_type", "content_encoding", "message_id", "correlation_id", "type", "app_id")


def _plain(value: Any) -> Any:
    """A header value as JSON can hold it (pika hands back bytes, datetimes and Decimals)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


@dataclass(frozen=True)
class StoredProperties:
    """The AMQP properties a stored letter keeps, shaped like pika's for :class:`DeadLetter`."""

    content_type: str | None = None
    content_encoding: str | None = None
    message_id: str | None = None
    correlation_id: str | None = None
    type: str | None = None
    app_id: str | None = None


def row_of(letter: DeadLetter, now: datetime) -> dict[str, Any]:
    """The ``dead_letters`` row of a letter just read from the queue."""
    properties = {name: getattr(letter.properties, name, None) for name in _PROPERTY_NAMES}
    return {
        "letter_id": letter.id,
        "message_id": letter.message_id,
        "connection_id": (letter.connection_id or "")[:64] or None,
        "resource": (letter.resource or "")[:32] or None,
        "reason": letter.reason[:120],
        "exception": letter.exception,
        "attempts": letter.attempts,
        "original_routing_key": letter.original_routing_key,
        "original_queue": letter.original_queue,
        "failed_at": letter.failed_at,
        "stored_at": now,
        "body": letter.body,
        "headers": json.dumps(_plain(letter.headers)),
        "properties": json.dumps(properties),
        "state": STORED,
    }


def letter_of(row: DeadLetterRecord) -> DeadLetter:
    """A stored row as the :class:`DeadLetter` the commands and the console show."""
    properties = StoredProperties(**json.loads(row.properties))
    try:
        document = json.loads(row.body)
    except (ValueError, UnicodeDecodeError):
        document = None
    return DeadLetter(
        id=row.letter_id,
        body=row.body,
        properties=properties,
        headers=json.loads(row.headers),
        envelope=document if isinstance(document, dict) else None,
        reason=row.reason,
        exception=row.exception,
        attempts=row.attempts,
        original_routing_key=row.original_routing_key,
        original_queue=row.original_queue,
        failed_at=row.failed_at,
    )


@dataclass
class Stored:
    """What a drain did: letters received, newly stored, and already stored (redeliveries)."""

    received: int = 0
    stored: int = 0

    @property
    def duplicates(self) -> int:
        return self.received - self.stored


class StoringConsumer:
    """Consumes ``dead-letter`` in batches: store (commit), then acknowledge the batch."""

    def __init__(
        self,
        amqp_url: str,
        store: DeadLetterStore,
        *,
        batch: int = 500,
        idle_timeout: float = 0.5,
    ) -> None:
        self._url = amqp_url
        self._store = store
        self._batch = max(1, batch)
        self._idle_timeout = idle_timeout

    def drain(self) -> Stored:
        """Store every letter now in the queue, and return once it has been idle a moment."""
        return self._consume(stop=None)

    def run(self, stop: threading.Event, *, retry_every: float = 5.0) -> None:
        """Store letters as they arrive until ``stop`` is set; a lost broker is retried."""
        while not stop.is_set():
            try:
                self._consume(stop=stop)
            except Exception as exc:  # the broker or the database went away: wait, then again
                log.warning("dead_letter_storing_failed", error=f"{type(exc).__name__}: {exc}")
                stop.wait(retry_every)

    def _consume(self, stop: threading.Event | None) -> Stored:
        outcome = Stored()
        connection = connect(self._url)
        try:
            channel = connection.channel()
            if stop is None and queue_counts(channel, DEAD_LETTER_QUEUE_NAME)[0] == 0:
                return outcome  # a drain of an empty queue: nothing to wait for
            # Twice the batch, so the next batch arrives while this one is being committed.
            channel.basic_qos(prefetch_count=2 * self._batch)
            rows: list[dict[str, Any]] = []
            last_tag = 0
            for method, properties, body in channel.consume(
                DEAD_LETTER_QUEUE_NAME, inactivity_timeout=self._idle_timeout
            ):
                if method is not None:
                    rows.append(row_of(read_letter(properties, body), datetime.now(UTC)))
                    last_tag = method.delivery_tag
                if rows and (method is None or len(rows) >= self._batch):
                    outcome.stored += self._store.add_many(rows)
                    outcome.received += len(rows)
                    # Only now, with the rows committed, may the broker forget the messages.
                    channel.basic_ack(delivery_tag=last_tag, multiple=True)
                    rows = []
                if stop is not None and stop.is_set() and not rows:
                    break
                if method is None and stop is None:
                    break
            channel.cancel()
        except AMQPError as exc:
            raise ConnectionError(
                f"lost RabbitMQ while storing dead letters ({type(exc).__name__})"
            ) from None
        finally:
            if connection.is_open:
                connection.close()
        return outcome
