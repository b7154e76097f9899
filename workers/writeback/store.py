"""The payment postings table: one row per FlexPoint payment, the truth of its write-back.

Every change of state is a compare-and-set ``UPDATE`` on the claim holder, so only the worker
holding a payment's claim moves it on; the claim is a lease (holder + expiry, store/leases.py)
taken over after it runs out, or at once when its holder was a process on this node that is
gone (SIGKILL).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Engine, Table, bindparam, case, select, update

from clients.intacct.payments import reference_for
from reliability.errors import LeaseLost
from reliability.leases import new_holder
from store.db import conflict_insert, write_transaction
from store.leases import LeaseColumns
from store.models import POSTING_STATES, PaymentPosting

# SQLAlchemy types __table__ as a FromClause; a declarative model's is always a Table.
_table = cast(Table, PaymentPosting.__table__)
_c = _table.c
# The statements of every posting's path, built once: building one costs several times running it.
_ROW = (_c.account_id == bindparam("key__account_id"), _c.payment_id == bindparam("key__payment_id"))
_GET = select(_table).where(*_ROW)
# The columns to set come from the values it runs with; only while no key is recorded.
_RECORD_POSTED = update(_table).where(*_ROW, _c.intacct_key.is_(None)).returning(*_table.c)
# The same write giving our claim back, when it is still ours: SET reads the row as it was, so both
# columns test the holder before the change.
_OURS = _c.claim_holder == bindparam("lease__owner")
_RECORD_POSTED_RELEASED = _RECORD_POSTED.values(
    claim_holder=case((_OURS, None), else_=_c.claim_holder),
    claim_until=case((_OURS, None), else_=_c.claim_until),
)


__all__ = ["LostClaim", "Posting", "PostingStore", "new_write_key", "reference_for"]


def new_write_key() -> str:
    """A fresh ``Idempotency-Key`` for one write (a create or a reverse), kept on the posting."""
    return f"flexsync-{uuid.uuid4()}"


class LostClaim(LeaseLost):
    """The payment's claim is no longer ours (it ran out and another worker took it)."""


@dataclass(frozen=True)
class Posting:
    """One row of ``payment_postings``."""

    account_id: str
    payment_id: str
    connection_id: str
    state: str
    reference: str
    intacct_key: str | None
    attempts: int
    reason: str | None
    message: str | None
    last_error: str | None
    requested_at: datetime | None
    intent_at: float | None
    settle_by: float | None
    posted_at: datetime | None
    reversed_on: str | None
    reverse_requested_at: datetime | None
    reversed_at: datetime | None
    claim_holder: str | None
    claim_until: float | None
    changed_at: datetime
    created_at: datetime
    updated_at: datetime
    company_id: str | None = None
    create_key: str | None = None
    reverse_key: str | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC)


class PostingStore:
    """Reads and moves payment postings; ``clock`` is unix seconds (leases), ``now`` timestamps."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], float] = time.time,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._now = now
        self._insert = conflict_insert(engine)
        self._leases = LeaseColumns(_table, holder="claim_holder", until="claim_until", clock=clock)
        self._row = self._leases.prepared("account_id", "payment_id")
        self._claim = self._row.claim.returning(*_table.c)
        # A new row's values come with each run; nothing is written for a row already there.
        self._add = self._insert(_table).on_conflict_do_nothing()
        self._add_claimed = self._insert(_table).on_conflict_do_nothing().returning(*_table.c)

    # -- reads --------------------------------------------------------------------------------

    def get(self, account_id: str, payment_id: str) -> Posting | None:
        with self._engine.connect() as conn:
            row = conn.execute(_GET, self._row.params(_key(account_id, payment_id))).mappings().first()
        return None if row is None else Posting(**row)

    def list(
        self, *, connection_id: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[Posting]:
        """The most recently changed postings first, filtered by connection and state."""
        query = select(_table).order_by(_c.updated_at.desc(), _c.payment_id).limit(limit)
        if connection_id:
            query = query.where(_c.connection_id == connection_id)
        if state:
            _check_state(state)
            query = query.where(_c.state == state)
        with self._engine.connect() as conn:
            return [Posting(**row) for row in conn.execute(query).mappings()]

    # -- the claim ----------------------------------------------------------------------------

    def claim_new(
        self,
        account_id: str,
        payment_id: str,
        connection_id: str,
        *,
        lease_seconds: float,
        requested_at: datetime | None = None,
    ) -> Posting | None:
        """Create the payment's row, ``pending``, with its claim ours, in one statement: the row,
        or None when the payment has a row already (then :meth:`get` and :meth:`claim` it)."""
        now = self._now()
        with write_transaction(self._engine) as conn:
            row = (
                conn.execute(
                    self._add_claimed,
                    {
                        **_new_row(account_id, payment_id, connection_id, now),
                        "state": "pending",
                        "requested_at": requested_at,
                        "claim_holder": new_holder(),
                        "claim_until": self._clock() + lease_seconds,
                    },
                )
                .mappings()
                .first()
            )
        return None if row is None else Posting(**row)

    def claim(
        self,
        account_id: str,
        payment_id: str,
        connection_id: str,
        *,
        lease_seconds: float,
        requested_at: datetime | None = None,
    ) -> Posting | None:
        """Take the payment's claim (creating its row, ``pending``, if new): the row, or None while
        another live worker holds it."""
        self._ensure_row(account_id, payment_id, connection_id, requested_at)
        key = _key(account_id, payment_id)
        holder = new_holder()
        now = self._clock()
        with write_transaction(self._engine) as conn:
            row = (
                conn.execute(
                    self._claim, self._row.params(key, now=now, holder=holder, until=now + lease_seconds)
                )
                .mappings()
                .first()
            )
            if row is None:
                # Held: taken over only if its holder died on this node (else the caller comes back later).
                taken = self._leases.claim_or_take_over(conn, key, holder, lease_seconds)
        if row is not None:
            return Posting(**row)
        return self._claimed(account_id, payment_id, holder) if taken else None

    def renew(self, posting: Posting, lease_seconds: float) -> Posting:
        """Extend our claim to ``lease_seconds`` from now; :class:`LostClaim` if it is not ours."""
        return self._update(posting, claim_until=self._clock() + lease_seconds)

    def lease_left(self, posting: Posting) -> float:
        """Seconds before our claim on ``posting`` runs out."""
        return (posting.claim_until or 0.0) - self._clock()

    def release(self, posting: Posting) -> None:
        """Give the claim back (only if still ours)."""
        key = _key(posting.account_id, posting.payment_id)
        with write_transaction(self._engine) as conn:
            conn.execute(self._row.release, self._row.params(key, owner=posting.claim_holder))

    # -- state changes (under our claim) ------------------------------------------------------

    def move(self, posting: Posting, state: str, **values: Any) -> Posting:
        """Set ``state`` (and columns ``values``) on our claimed row; the state's time is now."""
        _check_state(state)
        changed = {"state": state, "changed_at": self._now()} if state != posting.state else {}
        return self._update(posting, **changed, **values)

    def intend(
        self, posting: Posting, state: str, *, lease_seconds: float, settle_seconds: float, **values: Any
    ) -> Posting:
        """Record, committed, that a create (``creating``) or reverse (``reversing``) is about to be sent
        and can take at most ``settle_seconds``, renewing our claim to ``lease_seconds`` in the same
        write (no write outlives its claim)."""
        now = self._clock()
        return self.move(
            posting,
            state,
            intent_at=now,
            settle_by=now + settle_seconds,
            attempts=posting.attempts + 1,
            claim_until=now + lease_seconds,
            **values,
        )

    def record_posted(self, posting: Posting, intacct_key: str, *, release: bool = False) -> Posting:
        """The payment exists in Intacct as ``intacct_key``: recorded even if the claim was lost meanwhile,
        since Intacct's answer is the truth (an earlier key recorded is kept and returned).

        With ``release`` the same write gives our claim back (if still ours), instead of a
        :meth:`release` after it: a posted payment needs no claim (a copy of its message finds it
        posted and only reports it again).
        """
        now = self._now()
        values = {
            "state": "posted",
            "intacct_key": intacct_key,
            "posted_at": now,
            "changed_at": now,
            "updated_at": now,
            "reason": None,
            "message": None,
        }
        key = _key(posting.account_id, posting.payment_id)
        statement, lease = (
            (_RECORD_POSTED_RELEASED, {"owner": posting.claim_holder}) if release else (_RECORD_POSTED, {})
        )
        with write_transaction(self._engine) as conn:
            row = conn.execute(statement, self._row.params(key, values, **lease)).mappings().first()
        if row is not None:
            return Posting(**row)
        current = self.get(posting.account_id, posting.payment_id)
        assert current is not None, "a claimed posting row is never deleted"
        return current

    def cancel_if_new(
        self,
        account_id: str,
        payment_id: str,
        connection_id: str,
        *,
        requested_at: datetime | None,
        message: str | None = None,
    ) -> bool:
        """Record a payment withdrawn before any post was seen (``cancelled``); False if it has a row."""
        now = self._now()
        with write_transaction(self._engine) as conn:
            inserted = conn.execute(
                self._insert(_table)
                .values(
                    **_new_row(account_id, payment_id, connection_id, now),
                    state="cancelled",
                    reason="cancelled",
                    message=message,
                    reverse_requested_at=requested_at,
                )
                .on_conflict_do_nothing()
                # RETURNING, not rowcount: psycopg's rowcount for ON CONFLICT DO NOTHING is not reliable.
                .returning(_c.payment_id)
            ).first()
        return inserted is not None

    # -- internals ----------------------------------------------------------------------------

    def _ensure_row(
        self, account_id: str, payment_id: str, connection_id: str, requested_at: datetime | None
    ) -> None:
        now = self._now()
        values = {**_new_row(account_id, payment_id, connection_id, now), "state": "pending"}
        with write_transaction(self._engine) as conn:
            conn.execute(self._add, {**values, "requested_at": requested_at})

    def _claimed(self, account_id: str, payment_id: str, holder: str) -> Posting:
        current = self.get(account_id, payment_id)
        if current is None or current.claim_holder != holder:
            raise LostClaim(f"the claim on payment {payment_id} went to another worker at once")
        return current

    def _update(self, posting: Posting, **values: Any) -> Posting:
        unknown = values.keys() - _table.c.keys()
        if unknown:
            raise ValueError(f"payment_postings has no column {', '.join(sorted(unknown))}")
        values["updated_at"] = self._now()
        key = _key(posting.account_id, posting.payment_id)
        with write_transaction(self._engine) as conn:
            updated = conn.execute(self._row.write, self._row.params(key, values, owner=posting.claim_holder))
        if updated.rowcount != 1:
            raise LostClaim(f"the claim on payment {posting.payment_id} is no longer ours")
        return _replace(posting, values)


def _key(account_id: str, payment_id: str) -> dict[str, str]:
    return {"account_id": account_id, "payment_id": payment_id}


def _new_row(account_id: str, payment_id: str, connection_id: str, now: datetime) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "payment_id": payment_id,
        "connection_id": connection_id,
        "reference": reference_for(account_id, payment_id),
        "attempts": 0,
        "changed_at": now,
        "created_at": now,
        "updated_at": now,
    }


def _replace(posting: Posting, values: dict[str, Any]) -> Posting:
    return Posting(**{**posting.__dict__, **values})


def _check_state(state: str) -> None:
    if state not in POSTING_STATES:
        raise ValueError(f"unknown posting state {state!r} (known: {', '.join(POSTING_STATES)})")
