"""The one door events enter the sync by: an envelope, an id in one namespace, a confirmed publish.

Every source of events goes through an :class:`EventDoor`: the webhook receiver
(:mod:`ingest.intake`) and the reconciler (:mod:`workers.reconcile.events`) today, Intacct's event
queue next. Whatever the source, the sync workers receive the same envelope
(:func:`ingest.messages.envelope_body`) on ``intacct.events``, under an event id drawn from the same
namespace, and a source learns that an event is in only when RabbitMQ confirmed it.
"""

from __future__ import annotations

import hashlib
import uuid
from concurrent.futures import Future
from typing import Any, Protocol

from ingest.messages import envelope_body

# One namespace for every source: the name hashed is "<connection id>/<idempotency key>", and the
# sources' idempotency keys do not overlap (the reconciler's begin with "reconcile:").
EVENT_NAMESPACE = uuid.UUID("5b0e7b8e-3c1d-4a57-9a43-8f6f1f9e2a10")
# Computed once: UUID.bytes builds the bytes anew on every read.
_NAMESPACE_BYTES = EVENT_NAMESPACE.bytes
_VARIANT_DIGIT = {digit: "89ab"[int(digit, 16) & 0x3] for digit in "0123456789abcdef"}


def event_id(connection_id: str, idempotency_key: str) -> str:
    """The event id of one delivery of a connection: a UUID v5 in :data:`EVENT_NAMESPACE`.

    ``str(uuid.uuid5(EVENT_NAMESPACE, f"{connection_id}/{idempotency_key}"))``, without building
    a UUID object: the receiver computes one per webhook.
    """
    name = f"{connection_id}/{idempotency_key}"
    text = hashlib.sha1(_NAMESPACE_BYTES + name.encode()).hexdigest()  # noqa: S324 - RFC 4122 v5
    # Version 5 in the 13th digit; the variant's two top bits (10) in the 17th.
    return f"{text[:8]}-{text[8:12]}-5{text[13:16]}-{_VARIANT_DIGIT[text[16]]}{text[17:20]}-{text[20:32]}"


class ConfirmedPublisher(Protocol):
    """What the door needs of :class:`broker.publisher.ConfirmingPublisher`."""

    def publish(
        self, routing_key: str, body: bytes, *, message_id: str, headers: dict[str, Any] | None = None
    ) -> Future[None]: ...

    def publish_and_wait(
        self, routing_key: str, body: bytes, *, timeout: float, **kwargs: Any
    ) -> Future[None]: ...


class EventDoor:
    """Puts events into the sync: each source builds its envelope here and publishes it confirmed."""

    def __init__(self, publisher: ConfirmedPublisher) -> None:
        self._publisher = publisher

    event_id = staticmethod(event_id)

    # The envelope (``ingest.messages.EnvelopeSchema``) as JSON bytes: the same for every source.
    envelope = staticmethod(envelope_body)

    def send(self, routing_key: str, envelope: bytes, event_id: str) -> Future[None]:
        """Publish persistently; the future resolves when RabbitMQ confirmed (pipelined sources).

        No AMQP headers: the envelope says what the message is (connection, object, action), and
        nothing reads headers that would repeat it.
        """
        return self._publisher.publish(routing_key, envelope, message_id=event_id)

    def send_and_wait(
        self, routing_key: str, envelope: bytes, event_id: str, *, timeout: float
    ) -> Future[None]:
        """Publish and wait up to ``timeout`` s for the confirm (a source answering a caller).

        Raises :class:`broker.publisher.PublishTimeout` (its ``future`` still resolves later) or
        :class:`broker.publisher.PublishError`.
        """
        return self._publisher.publish_and_wait(routing_key, envelope, timeout=timeout, message_id=event_id)
