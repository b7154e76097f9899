"""Handling one connection message: connect (validate, store, report) or disconnect (purge, report).

Dependencies are injected (store, marks, Intacct and FlexPoint clients, the backfill scheduler),
so the handler knows nothing of the broker: it answers None when the message is done, or a
:class:`workers.runtime.failures.Failure` saying whether the consumer should retry it or park it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from marshmallow import ValidationError

from broker.topology import RETRY_DELAYS_SECONDS
from clients.flexpoint import FlexPointError
from clients.intacct import AREAS, IntacctError, PermissionDenied, TokenRefused
from observability.logging import get_logger
from reliability.errors import Permanent, Transient
from workers.connections import reasons, status
from workers.connections.marks import ProvisioningMarks
from workers.connections.messages import CONNECT_ROUTING_KEY, load_message
from workers.connections.reasons import ConnectFailure
from workers.connections.store import AccountInUseError, ConnectionRecord
from workers.runtime.failures import Failure, failure_of

log = get_logger(__name__)


class Backfills(Protocol):
    """What provisioning needs of the historical import (``workers.backfill``)."""

    def request(self, connection_id: str, *, restart: bool) -> None:
        """Schedule the import: from scratch when ``restart``, else only if it never completed."""

    def cancel(self, connection_id: str) -> None:
        """Stop the connection's import at its next page."""


class Connections(Protocol):
    """What provisioning needs of the connection store (a ConnectionStore, or one announcing its changes)."""

    def get(self, connection_id: str) -> ConnectionRecord | None: ...

    def live_for_account(self, account_id: str) -> ConnectionRecord | None: ...

    def save(
        self,
        connection_id: str,
        account_id: str,
        company_id: str,
        entity_id: str | None,
        user_id: str,
        state: str,
        user_password: str | None = None,
    ) -> ConnectionRecord: ...

    def set_state(self, connection_id: str, state: str) -> None: ...

    def disconnect(self, connection_id: str) -> bool: ...


class AccountMismatch(Permanent, ValueError):
    """The message names another FlexPoint account than the stored connection's."""

    reason = "account_mismatch"


class _AccountBeingFreed(Transient):
    """The account's other connection has a disconnect under way; the connect waits for it."""

    reason = "account_in_use"


class _IntacctDown(Transient):
    """Intacct failed transiently; the message goes through a delay queue."""

    reason = "intacct_unavailable"

    def __init__(self, cause: IntacctError) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass(frozen=True)
class _Candidate:
    """The credentials of a connect message, in the shape the Intacct client reads."""

    connection_id: str
    company_id: str
    user_id: str
    entity_id: str | None


class ProvisioningHandler:
    """Turns connect and disconnect messages into stored connections and reported statuses.

    ``unavailable_retries`` bounds the trips of a connect through the delay queues while Intacct
    is unavailable; after that the connect is reported ``failed`` with ``intacct_unavailable``.
    """

    def __init__(
        self,
        *,
        store: Connections,
        marks: ProvisioningMarks,
        intacct: Any,
        flexpoint: Any,
        backfills: Backfills,
        public_base_url: str,
        unavailable_retries: int = len(RETRY_DELAYS_SECONDS),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not 0 <= unavailable_retries <= len(RETRY_DELAYS_SECONDS):
            raise ValueError(f"unavailable_retries must lie between 0 and {len(RETRY_DELAYS_SECONDS)}")
        self._store = store
        self._marks = marks
        self._intacct = intacct
        self._flexpoint = flexpoint
        self._backfills = backfills
        self._public_base_url = public_base_url
        self._unavailable_retries = unavailable_retries
        self._clock = clock

    def handle(self, routing_key: str, body: Any, *, attempts: int = 0) -> Failure | None:
        """Process one message that already failed ``attempts`` times; None when it is done."""
        try:
            message = load_message(routing_key, body)
        except KeyError:
            problem = ValueError(f"routing key {routing_key!r} is not a connection message")
            return Failure("unknown_routing_key", problem, transient=False)
        except ValidationError as exc:
            # Field names and marshmallow's texts only: never the values (a password may be one).
            return Failure(
                "malformed_message", ValueError(f"invalid fields: {exc.messages}"), transient=False
            )
        kind = "connect" if routing_key == CONNECT_ROUTING_KEY else "disconnect"
        connection_id = message["connectionId"]
        try:
            # Before the mark: a message we reject must not make the owner's own requests stale.
            existing = self._owned(connection_id, message["accountId"])
        except AccountMismatch as exc:
            return failure_of(exc)
        if not self._marks.claim(connection_id, message["requestedAt"], kind, message["messageId"]):
            log.info(
                "stale_message_ignored",
                kind=kind,
                connection_id=connection_id,
                message_id=message["messageId"],
            )
            return None
        try:
            if kind == "connect":
                self._connect(message, existing, attempts)
            else:
                self._disconnect(message, existing)
        except FlexPointError as exc:
            # Provisioning's dead letters name FlexPoint's failures in two words, whatever the kind.
            transient = isinstance(exc, Transient)
            return Failure("flexpoint_unavailable" if transient else "flexpoint_rejected", exc, transient)
        except _IntacctDown as exc:
            # The dead letter shows Intacct's own error, not the wrapper.
            return Failure(exc.reason, exc.cause, transient=True)
        except _AccountBeingFreed as exc:
            return failure_of(exc)
        return None

    # -- connect ------------------------------------------------------------------------------

    def _connect(self, message: dict[str, Any], existing: ConnectionRecord | None, attempts: int) -> None:
        connection_id, account_id = message["connectionId"], message["accountId"]
        other = self._store.live_for_account(account_id)
        if other is not None and other.connection_id != connection_id:
            self._refuse_or_wait(message, other, existing, attempts)
            return
        if attempts == 0:
            # Later attempts leave what the admin sees as it is: "connecting", saying why it waits.
            self._report(account_id, status.connecting(message))
        try:
            verdict = self._validate(message, attempts)
        except _IntacctDown:
            # Within seconds of the click, not after a trip through the delay queues.
            self._report(account_id, status.connecting(message, reasons.still_trying()))
            raise
        if verdict is not None:
            self._fail(message, verdict, existing)
            return
        try:
            self._store.save(
                connection_id,
                account_id,
                message["companyId"],
                message["entityId"],
                message["userId"],
                "connected",
                message["userPassword"],
            )
        except AccountInUseError:
            # Another connection of the account went live while this one was being checked.
            other = self._store.live_for_account(account_id)
            self._fail(message, reasons.account_in_use(other.connection_id if other else "?"), existing)
            return
        if self._superseded_by(message):
            return
        # Scheduled before the report: a report that keeps failing must not cost the import.
        # A connection new or revived imports its history from the start; a rotation keeps the run.
        self._backfills.request(connection_id, restart=existing is None or not existing.is_active)
        url = status.webhook_url(self._public_base_url, connection_id)
        self._report(account_id, status.connected(message, url))
        if self._superseded_by(message) == "disconnect":
            # A disconnect was taken on while "connected" was being reported: it has the last word.
            self._report(account_id, status.disconnected(message, message["companyId"]))
            return
        log.info(
            "connection_connected",
            connection_id=connection_id,
            account_id=account_id,
            company_id=message["companyId"],
            rotated=existing is not None and existing.is_active,
        )

    def _refuse_or_wait(
        self,
        message: dict[str, Any],
        other: ConnectionRecord,
        existing: ConnectionRecord | None,
        attempts: int,
    ) -> None:
        """The account has another live connection: wait if it is being disconnected, else fail.

        A customer who disconnects and connects again at once sends both messages together; the
        disconnect, handled on another thread or process, has claimed its mark but may not have
        freed the account yet. The connect then goes through the delay queues rather than fail.
        """
        mark = self._marks.current(other.connection_id)
        if mark is not None and mark.kind == "disconnect" and attempts < len(RETRY_DELAYS_SECONDS):
            log.info(
                "connect_waits_for_disconnect",
                connection_id=message["connectionId"],
                other_connection_id=other.connection_id,
                attempts=attempts + 1,
            )
            raise _AccountBeingFreed(f"connection {other.connection_id} of the account is being disconnected")
        self._fail(message, reasons.account_in_use(other.connection_id), existing)

    def _validate(self, message: dict[str, Any], attempts: int) -> ConnectFailure | None:
        """A token, then one read per permission area; the verdict when anything is wrong."""
        candidate = _Candidate(
            message["connectionId"], message["companyId"], message["userId"], message["entityId"]
        )
        # A fresh token proves the credentials now, and old credentials' tokens are dropped.
        self._intacct.forget(candidate.connection_id)
        missing: list[str] = []
        try:
            for area in AREAS:
                try:
                    self._intacct.read_permissions_probe(candidate, area)
                except PermissionDenied as exc:
                    missing.append(exc.area if exc.area in AREAS else area)
        except TokenRefused as exc:
            if exc.reason == "internal_error":
                log.error("intacct_refused_our_client", connection_id=candidate.connection_id, error=str(exc))
            return reasons.for_refusal(
                exc, company_id=candidate.company_id, user_id=candidate.user_id, entity_id=candidate.entity_id
            )
        except IntacctError as exc:
            if not isinstance(exc, Transient):
                log.error("connect_check_failed", connection_id=candidate.connection_id, error=str(exc))
                return reasons.internal_error()
            if self._may_retry(message, attempts):
                raise _IntacctDown(exc) from exc
            log.warning(
                "intacct_unavailable_gave_up", connection_id=candidate.connection_id, attempts=attempts + 1
            )
            return reasons.unavailable()
        finally:
            # Whatever the outcome, the probe's token must not outlive the check in this process.
            self._intacct.forget(candidate.connection_id)
        return reasons.for_missing(missing) if missing else None

    def _may_retry(self, message: dict[str, Any], attempts: int) -> bool:
        """Whether a connect Intacct did not answer goes round the delay queues once more.

        The admin waits for the verdict: a retry must come back before
        :data:`reasons.UNAVAILABLE_VERDICT_SECONDS` since the request (the last delay, 300 s,
        never fits). The first failure is always tried again once, even for a request that
        waited long in the queue (a worker was down), so one blip does not fail it.
        """
        if attempts >= self._unavailable_retries:
            return False
        if attempts == 0:
            return True
        elapsed = (self._clock() - message["requestedAt"]).total_seconds()
        return elapsed + RETRY_DELAYS_SECONDS[attempts] <= reasons.UNAVAILABLE_VERDICT_SECONDS

    def _fail(
        self, message: dict[str, Any], verdict: ConnectFailure, existing: ConnectionRecord | None
    ) -> None:
        if existing is not None and existing.is_active:
            # The connection stays usable with its stored credentials; its state says what FlexPoint shows.
            self._store.set_state(existing.connection_id, "failed")
        self._report(message["accountId"], status.failed(message, verdict))
        log.info(
            "connection_failed",
            connection_id=message["connectionId"],
            account_id=message["accountId"],
            reason=verdict.reason,
            missing_permissions=list(verdict.missing_permissions),
        )

    def _superseded_by(self, message: dict[str, Any]) -> str | None:
        """The kind of a newer request taken on while this connect was handled (it wins), or None."""
        mark = self._marks.current(message["connectionId"])
        if mark is None or mark.message_id == message["messageId"]:
            return None
        if mark.kind == "disconnect":
            # The disconnect may have run before our save: make sure it holds.
            self._store.disconnect(message["connectionId"])
            self._intacct.forget(message["connectionId"])
        log.info("connect_superseded", connection_id=message["connectionId"], by=mark.kind)
        return mark.kind

    # -- disconnect ---------------------------------------------------------------------------

    def _disconnect(self, message: dict[str, Any], existing: ConnectionRecord | None) -> None:
        connection_id, account_id = message["connectionId"], message["accountId"]
        self._backfills.cancel(connection_id)
        self._store.disconnect(connection_id)
        self._intacct.forget(connection_id)
        self._report(account_id, status.disconnected(message, existing.company_id if existing else None))
        log.info(
            "connection_disconnected",
            connection_id=connection_id,
            account_id=account_id,
            known=existing is not None,
            requested_reason=message["reason"],
        )

    # -- shared -------------------------------------------------------------------------------

    def _owned(self, connection_id: str, account_id: str) -> ConnectionRecord | None:
        existing = self._store.get(connection_id)
        if existing is not None and existing.account_id != account_id:
            raise AccountMismatch(
                f"connection {connection_id} belongs to account {existing.account_id}, "
                f"not to {account_id} named by the message"
            )
        return existing

    def _report(self, account_id: str, body: dict[str, Any]) -> None:
        self._flexpoint.report_status(account_id, body)
