"""Webhook intake: the brief's checks in order, then a confirmed publish, then the answer.

Framework-free: the Flask view hands over the connection id, headers and raw body, and gets
back an :class:`Accepted` or a :class:`~ingest.errors.WebhookRefused`. Dependencies (the
connection lookup, the idempotency ledger, the verifiers, the publisher) are injected.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from marshmallow import ValidationError

from broker.publisher import PublishError, PublishTimeout
from ingest.auth import AuthenticationError, KeySourceUnavailable, _same
from ingest.body import BodyLoader
from ingest.door import ConfirmedPublisher, EventDoor
from ingest.errors import WebhookRefused, unavailable
from ingest.ledger import DeliveryLookup
from ingest.messages import WebhookBodySchema, is_utf8_json
from ingest.recent import DeliveryAbandoned, RecentDeliveries
from ingest.sage_signature import SAGE_SIGNATURE_HEADER
from ingest.verification import HMAC_HEADER, TRUSTED_CONTEXT_HEADER, NotConfigured, Verified, WebhookVerifier
from observability.logging import bind_request_context, get_logger
from schemas.catalog import ACTIONS, SyncedObject, lookup
from workers.connections.store import ConnectionRecord, RefreshingLookup

log = get_logger(__name__)
_DEBUG = logging.getLogger(__name__)

# In the brief's order: the first one a delivery carries is its key.
IDEMPOTENCY_HEADERS = ("Idempotency-Key", "X-IdempotencyKey", "X-Idempotency-Key")
SIGNATURE_HEADER = HMAC_HEADER
# Every request header the checks read; :meth:`WebhookIntake.accept` is given these, by name.
REQUEST_HEADERS = (
    "Authorization",
    TRUSTED_CONTEXT_HEADER,
    SAGE_SIGNATURE_HEADER,
    SIGNATURE_HEADER,
    *IDEMPOTENCY_HEADERS,
)
_CONNECTION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MAX_KEY_LENGTH = 200
# Event ids derived from idempotency keys live in their own UUID namespace.


# Refusals that rest on what the receiver holds of the connection (that it exists, is live,
# its webhook secret, its company): given only once the database confirms the connection has
# not changed since it was cached, so a change is never answered with its old state.
_CONNECTION_REFUSALS = frozenset(
    {
        "unknown_connection",
        "connection_disconnected",
        "bad_signature",
        "signing_not_configured",
        "company_mismatch",
        "tenant_mismatch",
    }
)


@dataclass(frozen=True)
class _Checked:
    """A delivery that passed the checks against one version of its connection."""

    connection: ConnectionRecord
    scheme: str
    document: dict[str, Any]
    body: dict[str, Any]


class TenantPins(Protocol):
    def pin_tenant(self, connection_id: str, tenant_id: str) -> str | None: ...


class Ledger(Protocol):
    def lookup(self, connection_id: str, key: str) -> DeliveryLookup: ...

    def version(self, updated_at: datetime | None) -> Any: ...


class Recorder(Protocol):
    def record(self, connection_id: str, key: str, event_id: str) -> None: ...


@dataclass(frozen=True)
class Accepted:
    """A delivery that is in the queue: newly (202) or already (200, a duplicate)."""

    event_id: str
    duplicate: bool
    routing_key: str | None = None

    @property
    def status(self) -> int:
        return 200 if self.duplicate else 202

    def body_json(self) -> bytes:
        """The answer, ``{"status": "accepted"|"duplicate", "eventId": ...}``, as compact JSON."""
        status = b'{"status":"duplicate","eventId":' if self.duplicate else b'{"status":"accepted","eventId":'
        return status + json.dumps(self.event_id).encode() + b"}"


class WebhookIntake:
    """Checks one delivery and publishes its envelope; see the brief's "Order of checks"."""

    def __init__(
        self,
        *,
        connections: RefreshingLookup,
        ledger: Ledger,
        recorder: Recorder,
        publisher: ConfirmedPublisher,
        verifier: WebhookVerifier,
        tenant_pins: TenantPins,
        confirm_timeout: float,
        retry_after: int,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._connections = connections
        self._ledger = ledger
        self._recorder = recorder
        self._recent = RecentDeliveries()
        self._door = EventDoor(publisher)
        self._verifier = verifier
        self._pins = tenant_pins
        self._confirm_timeout = confirm_timeout
        self._retry_after = retry_after
        self._now = now
        self._body = BodyLoader(WebhookBodySchema())

    # Size (413) and content type (415) are checked by the view before the body is read.

    def accept(self, connection_id: str, headers: Mapping[str, str], raw_body: bytes) -> Accepted:
        """Run the checks after size and content type; raises :class:`WebhookRefused`.

        The checks run against the cached connection; the ledger's lookup, made anyway, tells
        whether it is still current, and a delivery is checked again against the stored one
        when it is not (likewise before a refusal that rests on the connection, unless the
        connection was read from the database for this very request).
        """
        bind_request_context(connection_id=connection_id)
        if not _CONNECTION_ID.match(connection_id):
            raise _unknown_connection()
        cached, just_read = self._connections.lookup(connection_id)
        try:
            checked = self._check(cached, headers, raw_body)
        except WebhookRefused as refusal:
            if just_read or (
                refusal.code not in _CONNECTION_REFUSALS
                and not (refusal.fields and "companyId" in refusal.fields)
            ):
                # Read from the database a moment ago (a made-up id is, every time): current,
                # no need to ask the ledger whether it changed.
                raise
            current = self._ledger.lookup(connection_id, "").connection_version
            if current == self._ledger.version(None if cached is None else cached.updated_at):
                raise
            checked = self._check(self._connections.refresh(connection_id), headers, raw_body)
        return self._enqueue(connection_id, checked, headers, raw_body)

    # -- checks, in the brief's order ----------------------------------------------------

    def _check(
        self, record: ConnectionRecord | None, headers: Mapping[str, str], raw_body: bytes
    ) -> _Checked:
        connection = self._connection(record)
        scheme = self._authenticate(connection, headers, raw_body)
        document, body = self._parse(raw_body, connection)
        return _Checked(connection, scheme, document, body)

    def _connection(self, record: ConnectionRecord | None) -> ConnectionRecord:
        if record is None:
            raise _unknown_connection()
        if not record.is_active:
            raise WebhookRefused(
                410,
                "connection_disconnected",
                "This connection was disconnected in FlexPoint; remove the trigger or reconnect.",
            )
        return record

    def _authenticate(self, connection: ConnectionRecord, headers: Mapping[str, str], raw_body: bytes) -> str:
        try:
            verified = self._verifier.verify(connection, headers, raw_body)
            if verified.tenant_id is not None:
                self._check_tenant(connection, verified)
            return verified.scheme
        except NotConfigured as exc:
            log.error("webhook_scheme_not_configured", reason=exc.code, scheme=self._verifier.scheme)
            raise WebhookRefused(401, exc.code, exc.message) from None
        except AuthenticationError as exc:
            log.info("webhook_unauthenticated", reason=exc.code)
            raise WebhookRefused(401, exc.code, exc.message) from None
        except KeySourceUnavailable:
            log.warning("jwks_unavailable")
            raise unavailable(
                "key_source_unavailable",
                "Signing keys cannot be fetched right now; retry later.",
                self._retry_after,
            ) from None

    def _check_tenant(self, connection: ConnectionRecord, verified: Verified) -> None:
        """The tenant pin: the first Sage-signed delivery after connect pins its tenant_id."""
        assert verified.tenant_id is not None
        pinned = connection.tenant_id
        if pinned is None:
            # Atomic in the store: of two first deliveries at once, one tenant wins.
            pinned = self._pins.pin_tenant(connection.connection_id, verified.tenant_id)
            self._connections.refresh(connection.connection_id)
            if pinned == verified.tenant_id:
                log.info("webhook_tenant_pinned")
        if pinned is None or not _same(pinned, verified.tenant_id):
            raise AuthenticationError(
                "tenant_mismatch",
                "The signature is for another Sage Intacct tenant than the one this connection serves.",
            )

    def _parse(self, raw_body: bytes, connection: ConnectionRecord) -> tuple[dict[str, Any], dict[str, Any]]:
        """The body as received and as loaded by the schema."""
        try:
            # What json.loads(raw_body) does, without its encoding detection for a plain body.
            text = raw_body.decode("utf-8", "surrogatepass") if is_utf8_json(raw_body) else raw_body
            document = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            raise WebhookRefused(400, "invalid_json", "The body is not valid JSON.") from None
        except RecursionError:
            # Nested deeper than the decoder can follow: the sender's fault, not ours (a 500
            # would also set off a reconciliation sweep of the company).
            raise WebhookRefused(
                400, "invalid_json", "The body is nested too deeply; send the webhook template's flat object."
            ) from None
        if not isinstance(document, dict):
            raise WebhookRefused(400, "invalid_body", "The body must be a JSON object.")
        try:
            body: dict[str, Any] = self._body.load(document)
        except ValidationError as exc:
            raise WebhookRefused(
                400,
                "invalid_body",
                "The body does not match the webhook template.",
                fields=exc.normalized_messages(),
            ) from None
        if body["companyId"] not in (None, connection.company_id):
            raise WebhookRefused(
                400,
                "invalid_body",
                "companyId is not this connection's company.",
                fields={"companyId": ["Does not match the connection's company."]},
            )
        if lookup(body["object"]) is None:
            raise WebhookRefused(
                422,
                "unsupported_object",
                f"Object {body['object']!r} is not synced; remove its trigger or pick a supported object.",
            )
        return document, body

    # -- idempotency and publishing -----------------------------------------------------

    def _enqueue(
        self, connection_id: str, checked: _Checked, headers: Mapping[str, str], raw_body: bytes
    ) -> Accepted:
        body = checked.body
        key = idempotency_key(connection_id, headers, body, raw_body)
        event_id = body["eventId"] or self._door.event_id(connection_id, key)
        synced = lookup(body["object"])
        assert synced is not None
        action = ACTIONS[body["action"]]
        routing_key = synced.routing_key(action)
        bind_request_context(event_id=event_id, routing_key=routing_key)

        identity = (connection_id, key)
        outcome = self._recent.begin(identity)
        if outcome is not None:
            return self._await_first_copy(outcome)
        try:
            found = self._ledger.lookup(connection_id, key)
            if found.connection_version != self._ledger.version(checked.connection.updated_at):
                # Changed since it was cached: the delivery is judged by the connection as it is.
                checked = self._check(self._connections.refresh(connection_id), headers, raw_body)
            if found.event_id is not None:
                self._recent.accepted(identity, found.event_id)
                if _DEBUG.isEnabledFor(logging.DEBUG):
                    log.debug("webhook_duplicate")
                return Accepted(found.event_id, duplicate=True)
            connection = checked.connection
            envelope = self._envelope(
                connection, synced, action, key, event_id, body, checked.document, raw_body, checked.scheme
            )
            self._publish(connection_id, key, event_id, routing_key, envelope)
        except BaseException:
            self._recent.abandoned(identity)
            raise
        self._recorder.record(connection_id, key, event_id)
        self._recent.accepted(identity, event_id)
        # Debug, not info: a line per accepted webhook cost as much CPU as all the checks; every
        # accepted event is in the archive stream with its ids, and the metrics count them.
        # Asked of the standard library first: it caches the answer, while a structlog call
        # builds a bound logger even when the level then drops it.
        if _DEBUG.isEnabledFor(logging.DEBUG):
            log.debug("webhook_accepted", auth=checked.scheme)
        return Accepted(event_id, duplicate=False, routing_key=routing_key)

    def _envelope(
        self,
        connection: ConnectionRecord,
        synced: SyncedObject,
        action: str,
        key: str,
        event_id: str,
        body: dict[str, Any],
        document: dict[str, Any],
        raw_body: bytes,
        scheme: str,
    ) -> bytes:
        return self._door.envelope(
            synced,
            connection_id=connection.connection_id,
            company_id=connection.company_id,
            event_id=event_id,
            action=action,
            key=body["key"],
            record_id=body["id"],
            occurred_at=body["occurredAt"],
            received_at=self._now().isoformat().replace("+00:00", "Z"),
            idempotency_key=key,
            auth_scheme=scheme,
            payload=document,
            # Parsed from these very bytes a moment ago: not encoded again.
            payload_json=raw_body,
        )

    def _publish(
        self, connection_id: str, key: str, event_id: str, routing_key: str, envelope: bytes
    ) -> None:
        """Publish and wait for the confirm; a broker that cannot confirm in time is a 503."""
        try:
            self._door.send_and_wait(routing_key, envelope, event_id, timeout=self._confirm_timeout)
        except PublishTimeout as exc:

            def record_if_confirmed_late(future: Future[None]) -> None:
                # Then Intacct's retry of this 503 is answered "duplicate", not published again.
                if future.exception() is None:
                    self._recorder.record(connection_id, key, event_id)

            exc.future.add_done_callback(record_if_confirmed_late)  # type: ignore[attr-defined]
            log.warning("webhook_publish_timeout")
            raise unavailable(
                "broker_timeout",
                "The message broker did not confirm in time; retry later.",
                self._retry_after,
            ) from None
        except PublishError as exc:
            log.warning("webhook_publish_failed", outcome=exc.outcome, error=str(exc))
            raise unavailable(
                "broker_unavailable", "The message broker is unavailable; retry later.", self._retry_after
            ) from None

    def _await_first_copy(self, outcome: Future[str]) -> Accepted:
        """Another copy of this delivery is (or just was) being published: share its outcome."""
        try:
            event_id = outcome.result(timeout=self._confirm_timeout)
        except (DeliveryAbandoned, FutureTimeout):
            raise unavailable(
                "in_flight", "The same delivery is being accepted right now; retry shortly.", 1
            ) from None
        log.debug("webhook_duplicate")
        return Accepted(event_id, duplicate=True)


def _unknown_connection() -> WebhookRefused:
    return WebhookRefused(404, "unknown_connection", "No connection has this id; check the webhook URL.")


def idempotency_key(
    connection_id: str, headers: Mapping[str, str], body: Mapping[str, Any], raw_body: bytes
) -> str:
    """The delivery's idempotency key: a header, else the body's eventId, else a hash."""
    for name in IDEMPOTENCY_HEADERS:
        value = (headers.get(name) or "").strip()
        if value:
            return _bounded(value)
    if body.get("eventId"):
        return _bounded(f"event:{body['eventId']}")
    digest = hashlib.sha256(connection_id.encode() + b"\n" + raw_body).hexdigest()
    return f"sha256:{digest}"


def _bounded(value: str) -> str:
    if len(value) <= _MAX_KEY_LENGTH and value.isprintable():
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
