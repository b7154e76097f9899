"""Why a payment message could not be finished now: each error has a ``reason`` and a ``transient`` flag.

Transient ones go back through the delay queues (the payment can still be posted: they are never
dead-lettered for it); the others are dead-lettered with their reason. They map one to one onto
``reliability.errors``' ``Transient``/``Permanent`` bases.
"""

from __future__ import annotations

from reliability.errors import FlexsyncError, Permanent, Transient


class WritebackError(FlexsyncError):
    """Root of the write-back's errors (transient ones are also :class:`Transient`, the rest :class:`Permanent`)."""

    reason = "internal_error"


class MalformedMessage(WritebackError, Permanent):
    """The body is not a valid payment message (or the routing key is not one)."""

    reason = "malformed_message"


class PaymentBusy(WritebackError, Transient):
    """Another live worker holds the payment's claim; this copy of the message waits its turn."""

    reason = "payment_busy"


class OutcomeUnknown(WritebackError, Transient):
    """A create or reverse was sent and its outcome is not known yet: looked up again later, never resent."""

    reason = "outcome_unknown"


class IntacctDown(WritebackError, Transient):
    """Intacct answered 5xx or 429, timed out, or its slots stayed busy; nothing was created."""

    reason = "intacct_unavailable"


class FlexPointDown(WritebackError, Transient):
    """FlexPoint's posting endpoint failed transiently; the state is in the database, re-reported later."""

    reason = "flexpoint_unavailable"


class FlexPointRefused(WritebackError, Permanent):
    """FlexPoint refused the posting report itself (400/404): a bug or an unknown payment there."""

    reason = "flexpoint_rejected"


class ConnectionGone(WritebackError, Permanent):
    """The connection is gone while Intacct holds (or may hold) the payment: an operator decides."""

    reason = "connection_inactive"


class ReverseRefused(WritebackError, Permanent):
    """Intacct refused to reverse a posted payment (e.g. a closed period); it stays posted."""

    reason = "reverse_refused"


class CompanyChanged(WritebackError, Permanent):
    """The posting was written in another Intacct company than the connection's current one: acting
    there would look up or reverse the wrong books, so an operator decides."""

    reason = "company_changed"
