"""The storing consumer: takes each message of ``dead-letter`` into the ``dead_letters`` table.

It runs on the worker runtime (workers/runtime/consumer.py): messages are gathered into batches
on the consumer thread, a worker thread stores a batch in one transaction, and the consumer
thread acknowledges the batch only after that transaction committed. A consumer killed mid-way
loses nothing: the unacknowledged messages are delivered again and, being the same letters (same
identity, workers/deadletters/letters.py), stored once. A batch the database refused stays
unacknowledged in hand and is stored again a few seconds later; a lost broker is reconnected by
the runtime (and what was in hand is redelivered).

It runs continuously as a part of the ``provisioning`` process (processes/deadletters.py), and
every dead-letter command stores what waits in the queue the same way (``until_idle``) before it
reads the table, so the CLI works whether or not that process runs.

No connect message's password is stored: the workers remove it from what they park, and the
storer removes it from what RabbitMQ parks on its own (a message over the delivery limit).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from kombu import Connection
from kombu.exceptions import OperationalError

from broker.admin import unreachable
from broker.topology import DEAD_LETTER_QUEUE_NAME, build_topology
from broker.urls import kombu_connection
from store.models import DeadLetterRecord
from workers.connections.messages import without_password
from workers.deadletters.letters import DeadLetter, read_letter
from workers.deadletters.store import STORED, DeadLetterStore
from workers.runtime.consumer import WorkerConsumer

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


class _KombuProperties:
    """A kombu message's properties and headers, shaped like pika's for :func:`read_letter`."""

    def __init__(self, message: Any) -> None:
        properties = message.properties or {}
        for name in (*_PROPERTY_NAMES, "timestamp", "delivery_mode"):
            setattr(self, name, properties.get(name))
        self.content_type = message.content_type
        self.content_encoding = message.content_encoding
        self.headers = dict(message.headers or {})


@dataclass
class Batch:
    """Letters received together, stored in one transaction and acknowledged together."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    messages: list[Any] = field(default_factory=list)
    retry_at: float = 0.0

    def log_context(self) -> dict[str, Any]:
        return {"letters": len(self.rows)}


def dead_letter_connection(amqp_url: str) -> Connection:
    """The storer's broker connection (every node of AMQP_URL, in turn)."""
    return kombu_connection(amqp_url)


class StoringConsumer(WorkerConsumer[Batch, "int | Exception"]):
    """Consumes ``dead-letter`` in batches: store (commit), then acknowledge the batch.

    Bodies are taken as they are (``raw``): a letter that is not JSON is stored like any other.

    ``until_idle`` (seconds): store what waits now and return from ``run()`` once the queue was
    idle that long; without it, store letters as they arrive until ``stop()``.
    """

    raw = True

    def __init__(
        self,
        connection: Connection,
        store: DeadLetterStore,
        *,
        batch: int = 500,
        linger: float = 0.1,
        retry_every: float = 5.0,
        until_idle: float | None = None,
    ) -> None:
        # Twice the batch in hand, so the next batch arrives while this one is being committed.
        batch = max(1, batch)
        super().__init__(
            connection,
            # The dead-letter queue's declaration depends on no setting.
            [build_topology().queue(DEAD_LETTER_QUEUE_NAME)],
            name="dead_letter_storer",
            workers=1,
            prefetch=2 * batch,
            poll_interval=0.05,
            until_idle=until_idle,
        )
        self._store = store
        self._batch = batch
        self._linger = linger
        self._retry_every = retry_every
        self._filling = Batch()
        self._first_at = 0.0
        self._waiting: list[Batch] = []  # refused by the database, retried at ``retry_at``
        self.outcome = Stored()
        self.amqp_url: str | None = None  # set by for_url, for error messages

    @classmethod
    def for_url(cls, amqp_url: str, store: DeadLetterStore, **options: Any) -> StoringConsumer:
        consumer = cls(dead_letter_connection(amqp_url), store, **options)
        consumer.amqp_url = amqp_url
        return consumer

    def drain(self) -> Stored:
        """Store every letter now in the queue, and return once it has been idle a moment."""
        # kombu raises its OperationalError once it gave up connecting.
        errors = (OperationalError, *self.connection.connection_errors, *self.connection.channel_errors)
        try:
            self.run()
        except errors as exc:
            # AMQP_URL as the operator wrote it (redacted), and kombu's reason (no credentials in it).
            url = self.amqp_url or self.connection.as_uri()
            raise unreachable(url, str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
        finally:
            self.close()
        return self.outcome

    # -- the runtime's hooks ----------------------------------------------------------------

    def accept(self, queue: str, body: Any, message: Any) -> None:
        if not self._filling.rows:
            self._first_at = time.monotonic()
        # What RabbitMQ dead-letters itself (the delivery limit, a queue's length or age) comes
        # as the producer sent it: a connect message's password is removed before anything keeps it.
        letter = read_letter(_KombuProperties(message), without_password(message.body))
        self._filling.rows.append(row_of(letter, datetime.now(UTC)))
        self._filling.messages.append(message)
        if len(self._filling.rows) >= self._batch:
            self._submit_filling()

    def dispatch(self) -> None:
        now = time.monotonic()
        for batch in [b for b in self._waiting if b.retry_at <= now]:
            self._waiting.remove(batch)
            self.submit(batch)
        # A batch not full yet goes once the thread is free and it gathered for a moment.
        if self._filling.rows and self.idle and now - self._first_at >= self._linger:
            self._submit_filling()

    def _submit_filling(self) -> None:
        batch, self._filling = self._filling, Batch()
        self.submit(batch)

    def handle(self, unit: Batch) -> int:
        return self._store.add_many(unit.rows)

    def crashed(self, unit: Batch, exc: Exception) -> int | Exception:
        return exc

    def settle(self, unit: Batch, outcome: int | Exception) -> None:
        if isinstance(outcome, Exception):
            if self.until_idle is not None:
                # A command storing what waits: the database's error is its answer. Nothing was
                # acknowledged, so the letters go back to the queue with the channel.
                raise outcome
            # Not stored, so not acknowledged: kept in hand and stored again in a moment.
            log.warning(
                "dead_letter_storing_failed",
                letters=len(unit.rows),
                error=f"{type(outcome).__name__}: {str(outcome).splitlines()[0] if str(outcome) else ''}",
            )
            unit.retry_at = time.monotonic() + self._retry_every
            self._waiting.append(unit)
            return
        # Only now, with the rows committed, may the broker forget the messages.
        for message in unit.messages:
            message.ack()
        self.outcome.received += len(unit.rows)
        self.outcome.stored += outcome

    def in_hand(self) -> int:
        return super().in_hand() + len(self._filling.rows) + len(self._waiting)

    def on_connection_revived(self) -> None:
        super().on_connection_revived()
        # What was in hand on the lost channel is the broker's again: it delivers it anew.
        self._filling = Batch()
        self._waiting = []

    def on_consume_end(self, connection: Any, channel: Any) -> None:
        if self._filling.rows:
            self._submit_filling()
        super().on_consume_end(connection, channel)
        if self._waiting:
            # Unacknowledged: they return to the queue when the channel closes.
            log.warning(
                "dead_letter_storer_stopped_unstored", letters=sum(len(b.rows) for b in self._waiting)
            )
