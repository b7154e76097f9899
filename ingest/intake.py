"""Webhook intake: the brief's checks in order, then a confirmed publish, then the answer.

Framework-free: the Flask view hands over the connection id, headers and raw body, and gets
back an :class:`Accepted` or a :class:`~ingest.errors.WebhookRefused`. Dependencies (the
connection lookup, the idempotency ledger, the verifiers, the publisher) are injected.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from marshmallow import ValidationError

from broker.publisher import PublishError, PublishTimeout
from ingest.auth import (
    AuthenticationError,
    HmacVerifier,
    JwtVerifier,
    KeySourceUnavailable,
    TrustedContextVerifier,
    company_claim_matches,
    parse_bearer,
)
from ingest.errors import WebhookRefused, unavailable
from observability.logging import get_logger
from schemas.catalog import ACTIONS, lookup
from schemas.webhook import WebhookBodySchema
from store.connections import ConnectionRecord
from store.deliveries import ClaimOutcome

log = get_logger(__name__)

ENVELOPE_VERSION = 1
IDEMPOTENCY_HEADERS = ("Idempotency-Key", "X-Idempotency-Key")
SIGNATURE_HEADER = "X-FlexPoint-Signature"
TRUSTED_CONTEXT_HEADER = "X-Trusted-Context"
_CONNECTION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MAX_KEY_LENGTH = 200
# Event ids derived from idempotency keys live in their own UUID namespace.
_EVENT_NAMESPACE = uuid.UUID("5b0e7b8e-3c1d-4a57-9a43-8f6f1f9e2a10")


class ConnectionLookup(Protocol):
    def get(self, connection_id: str) -> ConnectionRecord | None: ...


class Ledger(Protocol):
    def claim(self, connection_id: str, key: str, event_id: str) -> Any: ...
    def confirm(self, connection_id: str, key: str) -> None: ...
    def release(self, connection_id: str, key: str) -> None: ...


class Publisher(Protocol):
    def publish_and_wait(
        self, routing_key: str, body: bytes, *, timeout: float, **kwargs: Any
    ) -> Future[None]: ...


@dataclass(frozen=True)
class Accepted:
    """A delivery that is in the queue: newly (202) or already (200, a duplicate)."""

    event_id: str
    duplicate: bool
    routing_key: str | None = None

    @property
    def status(self) -> int:
        return 200 if self.duplicate else 202

    def body(self) -> dict[str, str]:
        return {"status": "duplicate" if self.duplicate else "accepted", "eventId": self.event_id}


class WebhookIntake:
    """Checks one delivery and publishes its envelope; see the brief's "Order of checks"."""

    def __init__(
        self,
        *,
        connections: ConnectionLookup,
        ledger: Ledger,
        publisher: Publisher,
        jwt_verifier: JwtVerifier | None,
        trusted_context: TrustedContextVerifier,
        hmac_verifier: HmacVerifier,
        confirm_timeout: float,
        retry_after: int,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._connections = connections
        self._ledger = ledger
        self._publisher = publisher
        self._jwt = jwt_verifier
        self._trusted_context = trusted_context
        self._hmac = hmac_verifier
        self._confirm_timeout = confirm_timeout
        self._retry_after = retry_after
        self._now = now
        self._schema = WebhookBodySchema()

    # Size (413) and content type (415) are checked by the view before the body is read.

    def accept(self, connection_id: str, headers: Mapping[str, str], raw_body: bytes) -> Accepted:
        """Run the checks after size and content type; raises :class:`WebhookRefused`."""
        structlog.contextvars.bind_contextvars(connection_id=connection_id)
        connection = self._connection(connection_id)
        scheme = self._authenticate(connection, headers, raw_body)
        body = self._parse(raw_body, connection)
        return self._enqueue(connection, headers, raw_body, body, scheme)

    # -- checks, in the brief's order ----------------------------------------------------

    def _connection(self, connection_id: str) -> ConnectionRecord:
        record = self._connections.get(connection_id) if _CONNECTION_ID.match(connection_id) else None
        if record is None:
            raise WebhookRefused(
                404, "unknown_connection", "No connection has this id; check the webhook URL."
            )
        if not record.is_active:
            raise WebhookRefused(
                410,
                "connection_disconnected",
                "This connection was disconnected in FlexPoint; remove the trigger or reconnect.",
            )
        return record

    def _authenticate(self, connection: ConnectionRecord, headers: Mapping[str, str], raw_body: bytes) -> str:
        try:
            token = parse_bearer(headers.get("Authorization"))
            if token is not None:
                if self._jwt is None:
                    log.error(
                        "jwt_not_configured", hint="set INTACCT_WEBHOOK_JWKS_URL and INTACCT_WEBHOOK_ISSUER"
                    )
                    raise AuthenticationError(
                        "jwt_not_configured", "This service cannot verify Intacct tokens yet."
                    )
                claims = self._jwt.verify(token)
                company_claim_matches(claims, connection.company_id)
                self._trusted_context.verify(headers.get(TRUSTED_CONTEXT_HEADER), connection.company_id)
                return "jwt"
            signature = headers.get(SIGNATURE_HEADER)
            if signature is not None:
                self._hmac.verify(signature, raw_body, connection.webhook_secrets)
                return "hmac"
            raise AuthenticationError(
                "missing_credentials",
                f"Send an Authorization: Bearer token or an {SIGNATURE_HEADER} header.",
            )
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

    def _parse(self, raw_body: bytes, connection: ConnectionRecord) -> dict[str, Any]:
        try:
            document = json.loads(raw_body)
        except (ValueError, UnicodeDecodeError):
            raise WebhookRefused(400, "invalid_json", "The body is not valid JSON.") from None
        if not isinstance(document, dict):
            raise WebhookRefused(400, "invalid_body", "The body must be a JSON object.")
        try:
            body: dict[str, Any] = self._schema.load(document)
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
        return body

    # -- idempotency and publishing -----------------------------------------------------

    def _enqueue(
        self,
        connection: ConnectionRecord,
        headers: Mapping[str, str],
        raw_body: bytes,
        body: dict[str, Any],
        scheme: str,
    ) -> Accepted:
        key = idempotency_key(connection.connection_id, headers, body, raw_body)
        event_id = body["eventId"] or str(uuid.uuid5(_EVENT_NAMESPACE, f"{connection.connection_id}/{key}"))
        synced = lookup(body["object"])
        assert synced is not None
        action = ACTIONS[body["action"]]
        routing_key = synced.routing_key(action)
        structlog.contextvars.bind_contextvars(event_id=event_id, routing_key=routing_key)

        claim = self._ledger.claim(connection.connection_id, key, event_id)
        if claim.outcome is ClaimOutcome.DUPLICATE:
            log.info("webhook_duplicate")
            return Accepted(claim.event_id or event_id, duplicate=True)
        if claim.outcome is ClaimOutcome.IN_FLIGHT:
            raise unavailable("in_flight", "The same delivery is being accepted right now; retry shortly.", 1)

        envelope = {
            "envelopeVersion": ENVELOPE_VERSION,
            "eventId": event_id,
            "connectionId": connection.connection_id,
            "companyId": connection.company_id,
            "object": synced.intacct_object,
            "module": synced.module,
            "resource": synced.resource,
            "action": action,
            "key": body["key"],
            "id": body["id"],
            "occurredAt": body["occurredAt"],
            "receivedAt": self._now().isoformat().replace("+00:00", "Z"),
            "idempotencyKey": key,
            "authScheme": scheme,
            "payload": json.loads(raw_body),
        }
        message = json.dumps(envelope, separators=(",", ":")).encode()
        try:
            self._publisher.publish_and_wait(
                routing_key,
                message,
                timeout=self._confirm_timeout,
                message_id=event_id,
                headers={
                    "connection-id": connection.connection_id,
                    "resource": synced.resource,
                    "object": synced.intacct_object,
                    "action": action,
                },
            )
        except PublishTimeout as exc:
            # The confirm may still come: settle the claim then, so Intacct's retry of this
            # 503 is answered "duplicate" if the message did reach the queue.
            exc.future.add_done_callback(  # type: ignore[attr-defined]
                lambda f: _in_background(self._settle_late, connection.connection_id, key, f)
            )
            log.warning("webhook_publish_timeout")
            raise unavailable(
                "broker_timeout",
                "The message broker did not confirm in time; retry later.",
                self._retry_after,
            ) from None
        except PublishError as exc:
            self._ledger.release(connection.connection_id, key)
            log.warning("webhook_publish_failed", outcome=exc.outcome, error=str(exc))
            raise unavailable(
                "broker_unavailable", "The message broker is unavailable; retry later.", self._retry_after
            ) from None
        self._ledger.confirm(connection.connection_id, key)
        log.info("webhook_accepted", auth=scheme)
        return Accepted(event_id, duplicate=False, routing_key=routing_key)

    def _settle_late(self, connection_id: str, key: str, future: Future[None]) -> None:
        try:
            if future.exception() is None:
                self._ledger.confirm(connection_id, key)
            else:
                self._ledger.release(connection_id, key)
        except Exception:
            # Left pending, the claim expires after its lease and a retry is accepted.
            log.exception("webhook_settle_failed", connection_id=connection_id)


def _in_background(function: Callable[..., None], *args: Any) -> None:
    # Done-callbacks run on the publisher's I/O thread, which must not wait on the database.
    threading.Thread(target=function, args=args, name="settle-late-confirm", daemon=True).start()


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
