"""FlexPoint's ``PaymentPosting`` (flexpoint-sync-api.yaml): checked before it is sent, keyed for replay.

A wrong body is a bug in our code, so it raises ValueError at once rather than cost a 400. The
Idempotency-Key is derived from the body, whose ``reportedAt`` is the time the posting's state
changed (not the time of sending): re-reporting an unchanged state sends the same bytes and key.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from clients.flexpoint.batches import canonical_json

STATES = frozenset({"posting", "posted", "failed", "reversed"})
REASONS = frozenset(
    {
        "customer_not_found",
        "invoice_not_found",
        "invoice_not_open",
        "over_application",
        "currency_mismatch",
        "bank_account_not_found",
        "period_closed",
        "permission_denied",
        "connection_inactive",
        "cancelled",
        "invalid_request",
        "internal_error",
        None,
    }
)
FIELDS = frozenset(
    {
        "connectionId",
        "paymentId",
        "state",
        "intacctKey",
        "intacctReference",
        "reason",
        "message",
        "postedAt",
        "reportedAt",
    }
)
REQUIRED = ("connectionId", "paymentId", "state", "reportedAt")
REFERENCE_MAX_LENGTH = 21
PAYMENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def check_payment_id(payment_id: Any) -> str:
    """The payment id if it fits the YAML's path pattern; ValueError otherwise."""
    if not isinstance(payment_id, str) or not PAYMENT_ID.fullmatch(payment_id):
        raise ValueError(f"FlexPoint payment id {payment_id!r} does not match ^[A-Za-z0-9_-]{{1,64}}$")
    return payment_id


def check_posting(posting: Any) -> None:
    """ValueError unless ``posting`` is a PaymentPosting the YAML accepts (no unknown fields)."""
    if not isinstance(posting, Mapping):
        raise ValueError("a payment posting must be a mapping")
    unknown = sorted(set(posting) - FIELDS)
    if unknown:
        raise ValueError(f"unknown PaymentPosting field(s): {', '.join(map(str, unknown))}")
    missing = [name for name in REQUIRED if posting.get(name) in (None, "")]
    if missing:
        raise ValueError(f"PaymentPosting lacks {', '.join(missing)}")
    check_payment_id(posting["paymentId"])
    if posting["state"] not in STATES:
        raise ValueError(f"PaymentPosting.state {posting['state']!r} is not one of {sorted(STATES)}")
    if posting.get("reason") not in REASONS:
        raise ValueError(f"PaymentPosting.reason {posting.get('reason')!r} is not a known reason")
    for name in ("intacctKey", "intacctReference", "message"):
        if posting.get(name) is not None and not isinstance(posting[name], str):
            raise ValueError(f"PaymentPosting.{name} must be a string or null")
    reference = posting.get("intacctReference")
    if reference is not None and len(reference) > REFERENCE_MAX_LENGTH:
        raise ValueError(f"PaymentPosting.intacctReference is longer than {REFERENCE_MAX_LENGTH} characters")
    for name in ("postedAt", "reportedAt"):
        value = posting.get(name)
        if value is not None and not (isinstance(value, str) and _TIMESTAMP.fullmatch(value)):
            raise ValueError(f"PaymentPosting.{name} {value!r} is not an RFC 3339 timestamp")


def posting_key(account_id: str, payment_id: str, posting: Mapping[str, Any]) -> str:
    """The report's Idempotency-Key: the same for the same account, payment and body."""
    digest = hashlib.sha256(f"{account_id}\n{payment_id}\n{canonical_json(posting)}".encode()).hexdigest()
    return f"posting-{digest[:48]}"
