"""One payment message: ``payment.post`` posts the payment into Intacct once, ``payment.reverse`` undoes it.

The posting's row is the truth. Its claim keeps two workers off one payment; the intent is
committed before any create or reverse is sent; a row left ``creating`` or ``reversing`` is
resolved by asking Intacct (the reference, or the payment's state) before anything else. The
handler knows nothing of the broker: it answers None when done, or a
:class:`workers.runtime.failures.Failure` (retry later, or park).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn

from marshmallow import ValidationError
from sqlalchemy.exc import OperationalError

from clients.flexpoint import FlexPointError
from clients.intacct import IntacctError, PermissionDenied
from clients.intacct.payments import (
    NOT_SENT,
    REVERSED_PAYMENT_STATES,
    PaymentWrites,
    create_body,
    outcome_unknown,
)
from observability.logging import get_logger
from workers.runtime.failures import Failure
from workers.writeback import checks, reasons, reports
from workers.writeback.errors import (
    CompanyChanged,
    ConnectionGone,
    FlexPointDown,
    FlexPointRefused,
    IntacctDown,
    OutcomeUnknown,
    PaymentBusy,
    ReverseRefused,
    WritebackError,
)
from workers.writeback.messages import POST_ROUTING_KEY, load_message
from workers.writeback.reasons import PostingRefusal
from workers.writeback.store import LostClaim, Posting, PostingStore, new_write_key

log = get_logger(__name__)

DATABASE_UNAVAILABLE = "database_unavailable"
SETTLED = ("posted", "reversing", "reversed", "cancelled")


class WritebackHandler:
    """Turns payment messages into Intacct payments and FlexPoint posting reports.

    ``write_span`` bounds one create or reverse from its recorded intent to its answer (token,
    slot wait, request timeouts): an unanswered write older than that has surely ended, so the
    reference query saying "absent" then means it never happened. Claims last ``write_span``
    plus ``lease_margin``, renewed with the intent, so no holder starts a write it could outlive.
    """

    def __init__(
        self,
        *,
        connections: Any,
        postings: PostingStore,
        intacct: PaymentWrites,
        flexpoint: Any,
        write_span: float,
        lease_margin: float = 30.0,
        metrics: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._connections = connections
        self._postings = postings
        self._intacct = intacct
        self._flexpoint = flexpoint
        self._span = write_span
        self._lease = write_span + lease_margin
        self._metrics = metrics
        self._clock = clock
        self._companies: dict[str, str] = {}  # connection id -> Intacct company, as last looked up

    def handle(self, routing_key: str, body: Any, *, attempts: int = 0) -> Failure | None:
        """Process one message (``attempts`` failures so far); None when it is done."""
        try:
            message = load_message(routing_key, body)
        except KeyError:
            problem = ValueError(f"routing key {routing_key!r} is not a payment message")
            return Failure("unknown_routing_key", problem, transient=False)
        except ValidationError as exc:
            return Failure(
                "malformed_message", ValueError(f"invalid fields: {exc.messages}"), transient=False
            )
        try:
            if routing_key == POST_ROUTING_KEY:
                self._post(message)
            else:
                self._reverse(message)
        except WritebackError as exc:
            self._count(f"retried:{exc.reason}" if exc.transient else f"dead:{exc.reason}")
            return Failure(exc.reason, exc, transient=exc.transient)
        except LostClaim as exc:
            return Failure(PaymentBusy.reason, exc, transient=True)
        except OperationalError as exc:
            # The database (the postings' truth) is unreachable or busy: wait, as for Intacct.
            return Failure(DATABASE_UNAVAILABLE, exc, transient=True)
        except IntacctError as exc:
            # A read (invoices, reference, state) that failed: nothing was sent that is not recorded.
            reason = "intacct_unavailable" if exc.transient else "intacct_refused"
            return Failure(reason, exc, transient=exc.transient)
        return None

    # -- payment.post -------------------------------------------------------------------------

    def _post(self, message: dict[str, Any]) -> None:
        # A payment seen for the first time: its row is made with our claim on it, in one write.
        posting = self._postings.claim_new(
            message["accountId"],
            message["paymentId"],
            message["connectionId"],
            lease_seconds=self._lease,
            requested_at=message["requestedAt"],
        )
        if posting is not None:
            connection = self._connection(message)
        else:
            row = self._postings.get(message["accountId"], message["paymentId"])
            if row is not None and row.state in SETTLED:
                self._report(row, replay=True)
                return
            connection = self._connection(message)
            if connection is None and row is not None and row.state == "creating":
                raise ConnectionGone(
                    "the connection is gone while a create's outcome is unknown; reconnect and replay"
                )
            posting = self._claim(message)
        released = False
        try:
            if posting.state in SETTLED:
                self._report(posting, replay=True)
            elif connection is None:
                self._fail(posting, reasons.connection_inactive())
            else:
                released = self._post_claimed(connection, message, posting)
        finally:
            if not released:
                self._postings.release(posting)

    def _post_claimed(self, connection: Any, message: dict[str, Any], posting: Posting) -> bool:
        """Post a claimed payment; True when the claim was given back with the posted record."""
        if posting.state == "creating":
            self._same_company(connection, posting, "create")
            found = self._resolve_create(connection, posting)
            if found is not None:
                self._posted(found, message)
                return False
        # The read of the invoices and the create go out under one of the company's slots, taken for
        # the read and kept for the create: a posting claims one slot, not two.
        sent: str | IntacctError | None = None
        with self._intacct.one_slot(connection):
            verdict = self._refusal(connection, message)
            if verdict is None:
                posting, sent = self._create(connection, message, posting)
        if verdict is not None:
            self._fail(posting, verdict)
            return False
        if isinstance(sent, str):
            # The claim goes back in the same write (one write less a posting): reporting needs none.
            recorded = self._postings.record_posted(posting, sent, release=True)
            self._posted(recorded, message)
            return recorded.claim_holder != posting.claim_holder
        assert sent is not None
        # A refusal (4xx): Intacct created nothing.
        self._fail(posting, reasons.for_refusal(sent, message), error=str(sent))
        return False

    def _refusal(self, connection: Any, message: dict[str, Any]) -> PostingRefusal | None:
        """What Intacct would refuse of the post: from the message, then one batch read of its invoices."""
        verdict = checks.over_allocated(message)
        if verdict is None and message["allocations"]:
            keys = [a["invoiceExternalId"] for a in message["allocations"]]
            try:
                verdict = checks.refusal(message, *self._intacct.invoices(connection, keys))
            except PermissionDenied:
                # The role cannot even read invoices: Accounts Receivable is missing altogether.
                verdict = reasons.permission_denied(read=True)
        return verdict

    def _create(
        self, connection: Any, message: dict[str, Any], posting: Posting
    ) -> tuple[Posting, str | IntacctError]:
        """The intent committed, then the create sent once: the posting, and the new payment's key or
        Intacct's refusal. Not sent: :class:`IntacctDown`; sent, outcome unknown: :class:`OutcomeUnknown`."""
        # Committed before the create is sent, the claim renewed to outlast it. One write keeps one
        # Idempotency-Key through all its attempts; a post sent again after a refusal is a new write.
        create_key = posting.create_key
        if create_key is None or posting.state == "failed":
            create_key = new_write_key()
        posting = self._postings.intend(
            posting,
            "creating",
            lease_seconds=self._lease,
            settle_seconds=self._span,
            create_key=create_key,
            company_id=connection.company_id,
        )
        try:
            return posting, self._intacct.create(
                connection, create_body(message, posting.reference), create_key
            )
        except NOT_SENT as exc:
            # Nothing reached Intacct (our cap, its 429, a refused token, an open breaker).
            self._postings.move(
                posting, "pending", intent_at=None, settle_by=None, last_error=str(exc)[:2000]
            )
            raise IntacctDown(str(exc)) from exc
        except IntacctError as exc:
            if outcome_unknown(exc):
                self._outcome_unknown(posting, exc)
            return posting, exc

    def _outcome_unknown(self, posting: Posting, exc: IntacctError) -> NoReturn:
        """The create may have been committed (a timeout, a 5xx, 408, 409, an unreadable 2xx): the row
        stays ``creating`` until the reference query, after the write's window, says what happened."""
        self._postings.move(posting, "creating", last_error=str(exc)[:2000])
        log.warning("payment_create_outcome_unknown", payment_id=posting.payment_id, status=exc.status)
        raise OutcomeUnknown(
            f"create of {posting.reference} unanswered ({exc}); looked up after its window"
        ) from exc

    def _resolve_create(self, connection: Any, posting: Posting) -> Posting | None:
        """A row left ``creating``: :class:`OutcomeUnknown` while the write could still land; after its
        window, the posted row if Intacct has the reference, None if the create never happened."""
        if not self._settled(posting):
            raise OutcomeUnknown(f"create of {posting.reference} may still be under way; looked again later")
        found = self._find(connection, posting)
        if found is not None:
            log.info("payment_create_resolved", payment_id=posting.payment_id, outcome="found")
            return found
        log.info("payment_create_resolved", payment_id=posting.payment_id, outcome="absent")
        return None

    def _find(self, connection: Any, posting: Posting) -> Posting | None:
        rows = self._intacct.find_by_reference(connection, posting.reference)
        if not rows:
            return None
        if len(rows) > 1:
            log.error(
                "payment_posted_twice", payment_id=posting.payment_id, keys=[r.get("key") for r in rows]
            )
        return self._postings.record_posted(posting, str(rows[0]["key"]))

    def _posted(self, posting: Posting, message: dict[str, Any]) -> None:
        self._report(posting)
        if self._metrics is not None and posting.state == "posted":
            self._metrics.record_posted(
                max(0.0, (datetime.now(UTC) - message["requestedAt"]).total_seconds())
            )
        log.info("payment_posted", payment_id=posting.payment_id, intacct_key=posting.intacct_key)

    # -- payment.reverse ----------------------------------------------------------------------

    def _reverse(self, message: dict[str, Any]) -> None:
        account_id, payment_id = message["accountId"], message["paymentId"]
        row = self._postings.get(account_id, payment_id)
        if row is None:
            if self._postings.cancel_if_new(
                account_id,
                payment_id,
                message["connectionId"],
                requested_at=message["requestedAt"],
                message=reasons.cancelled().message,
            ):
                cancelled = self._postings.get(account_id, payment_id)
                assert cancelled is not None
                self._cancelled(cancelled, message, claimed=False)
                return
            row = self._postings.get(account_id, payment_id)
        if row is not None and row.state in ("reversed", "cancelled"):
            self._report(row, replay=True)
            return
        posting = self._claim(message)
        try:
            self._reverse_claimed(message, posting)
        finally:
            self._postings.release(posting)

    def _reverse_claimed(self, message: dict[str, Any], posting: Posting) -> None:
        if posting.state in ("reversed", "cancelled"):
            self._report(posting, replay=True)
            return
        if posting.state in ("pending", "failed"):
            self._cancelled(posting, message, claimed=True)
            return
        connection = self._connection(message)
        if connection is None:
            raise ConnectionGone("the payment is (or may be) in Intacct but the connection is gone")
        self._same_company(connection, posting, "reverse")
        if posting.state == "creating":
            found = self._resolve_create(connection, posting)
            if found is None:
                self._cancelled(posting, message, claimed=True)
                return
            posting = found
        if posting.state == "reversing":
            if self._is_reversed(connection, posting):
                self._reversed(posting)
                return
            if not self._settled(posting):
                raise OutcomeUnknown(f"reverse of {posting.intacct_key} may still be under way")
        posting = self._postings.intend(
            posting,
            "reversing",
            lease_seconds=self._lease,
            settle_seconds=self._span,
            reversed_on=message["reversedOn"].isoformat(),
            reverse_requested_at=message["requestedAt"],
            reverse_key=posting.reverse_key or new_write_key(),
        )
        assert posting.intacct_key is not None, "a posted payment has its key"
        assert posting.reverse_key is not None
        try:
            self._intacct.reverse(
                connection,
                posting.intacct_key,
                posting.reversed_on or "",
                message.get("memo"),
                posting.reverse_key,
            )
        except NOT_SENT as exc:
            self._postings.move(posting, "posted", intent_at=None, settle_by=None, last_error=str(exc)[:2000])
            raise IntacctDown(str(exc)) from exc
        except IntacctError as exc:
            if self._is_reversed(connection, posting):
                self._reversed(posting)
                return
            if outcome_unknown(exc):
                raise OutcomeUnknown(f"reverse of {posting.intacct_key} unanswered: {exc}") from exc
            self._postings.move(posting, "posted", intent_at=None, settle_by=None, last_error=str(exc)[:2000])
            raise ReverseRefused(str(exc)) from exc
        self._reversed(posting)

    def _is_reversed(self, connection: Any, posting: Posting) -> bool:
        return self._intacct.state_of(connection, posting.intacct_key or "") in REVERSED_PAYMENT_STATES

    def _reversed(self, posting: Posting) -> None:
        posting = self._postings.move(
            posting, "reversed", reversed_at=datetime.now(UTC), intent_at=None, settle_by=None
        )
        self._report(posting)
        self._count("reversed")
        log.info("payment_reversed", payment_id=posting.payment_id, intacct_key=posting.intacct_key)

    def _cancelled(self, posting: Posting, message: dict[str, Any], *, claimed: bool) -> None:
        if claimed:
            verdict = reasons.cancelled()
            posting = self._postings.move(
                posting,
                "cancelled",
                reason=verdict.reason,
                message=verdict.message,
                reverse_requested_at=message["requestedAt"],
                reversed_on=message["reversedOn"].isoformat(),
            )
        self._report(posting)
        self._count("cancelled")
        log.info("payment_cancelled", payment_id=posting.payment_id)

    # -- shared -------------------------------------------------------------------------------

    def _claim(self, message: dict[str, Any]) -> Posting:
        posting = self._postings.claim(
            message["accountId"],
            message["paymentId"],
            message["connectionId"],
            lease_seconds=self._lease,
            requested_at=message["requestedAt"] if "receivedOn" in message else None,
        )
        if posting is None:
            raise PaymentBusy(f"payment {message['paymentId']} is being worked on by another worker")
        return posting

    def _same_company(self, connection: Any, posting: Posting, write: str) -> None:
        """Refuse to act for a posting written in another Intacct company than the connection's now."""
        if posting.company_id is not None and posting.company_id != connection.company_id:
            log.error(
                "payment_company_changed",
                payment_id=posting.payment_id,
                posted_in=posting.company_id,
                connected_to=connection.company_id,
            )
            raise CompanyChanged(
                f"payment {posting.payment_id} was written in Intacct company {posting.company_id}, but the "
                f"connection now points at {connection.company_id}: the {write} is refused; reconnect "
                f"FlexPoint to {posting.company_id} or settle the payment there by hand"
            )

    def _connection(self, message: dict[str, Any]) -> Any:
        """The message's connection if it is live and the account's own, else None."""
        connection = self._connections.get(message["connectionId"])
        if connection is None or not connection.is_active or connection.account_id != message["accountId"]:
            return None
        self._companies[connection.connection_id] = connection.company_id
        return connection

    def company_of(self, connection_id: Any) -> str | None:
        """The Intacct company of a connection this handler has posted for (None: not yet seen)."""
        return self._companies.get(connection_id)

    def _settled(self, posting: Posting) -> bool:
        # The writer's own bound, from its own timeouts: processes with other timeouts agree on it.
        return posting.settle_by is None or self._clock() >= posting.settle_by

    def _fail(self, posting: Posting, verdict: PostingRefusal, *, error: str | None = None) -> None:
        posting = self._postings.move(
            posting,
            "failed",
            reason=verdict.reason,
            message=verdict.message,
            intent_at=None,
            settle_by=None,
            last_error=error,
        )
        self._report(posting)
        self._count(f"failed:{verdict.reason}")
        log.info("payment_failed", payment_id=posting.payment_id, reason=verdict.reason)

    def _report(self, posting: Posting, *, replay: bool = False) -> None:
        try:
            self._flexpoint.report_posting(posting.account_id, posting.payment_id, reports.body(posting))
        except FlexPointError as exc:
            if exc.transient:
                raise FlexPointDown(str(exc)) from exc
            raise FlexPointRefused(str(exc)) from exc
        if replay:
            self._count(f"replayed:{posting.state}")

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.record_outcome(outcome)
