"""The PaymentPosting bodies reported to FlexPoint, built from the posting's row (the truth).

``reportedAt`` is when the row's state changed, so reporting an unchanged state again sends the
same body (and the same Idempotency-Key): FlexPoint treats it as a replay.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from workers.writeback.store import Posting

# Which FlexPoint state each row state is reported as; the others are not reported.
REPORTED = {
    "posted": "posted",
    "reversing": "posted",
    "reversed": "reversed",
    "failed": "failed",
    "cancelled": "failed",
}


def _timestamp(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def body(posting: Posting) -> dict[str, Any]:
    """The report for a settled posting (posted, reversing, reversed, failed, cancelled)."""
    state = REPORTED[posting.state]
    failed = state == "failed"
    return {
        "connectionId": posting.connection_id,
        "paymentId": posting.payment_id,
        "state": state,
        "intacctKey": None if failed else posting.intacct_key,
        "intacctReference": posting.reference,
        "reason": (posting.reason or "internal_error") if failed else None,
        "message": posting.message if failed else None,
        "postedAt": None if failed else _timestamp(posting.posted_at),
        # A posted payment whose reverse is under way is still reported as it was when posted.
        "reportedAt": _timestamp(posting.posted_at if posting.state == "reversing" else posting.changed_at),
    }
