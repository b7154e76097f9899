"""The webhook idempotency ledger, shared by every receiver process through the database.

A delivery is *claimed* before its event is published and *confirmed* once the broker confirmed
it; a failed publish *releases* the claim so Intacct's retry is accepted. Each call is one
autocommitted statement, except a claim that finds an existing row, which reads it and may take
it over with a compare-and-set update, so no transaction is ever held across round trips.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from store.models import WebhookDelivery

_table = WebhookDelivery.__table__
_c = _table.c
_MAX_KEY_LENGTH = 200
_MAX_ATTEMPTS = 3


class ClaimOutcome(enum.Enum):
    NEW = "new"  # this caller owns the delivery: publish, then confirm or release
    DUPLICATE = "duplicate"  # already accepted earlier: answer 200 with the stored event id
    IN_FLIGHT = "in_flight"  # another receiver is publishing it right now: ask for a retry


@dataclass(frozen=True)
class Claim:
    """The outcome of a claim; ``event_id`` is the caller's for NEW, the stored one otherwise."""

    outcome: ClaimOutcome
    event_id: str


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _storage_key(key: str) -> str:
    """Idempotency keys come from outside; long ones are hashed to fit the column on every DB."""
    if len(key) <= _MAX_KEY_LENGTH:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


class DeliveryLedger:
    """Records which webhook deliveries were accepted, so retries are answered as duplicates."""

    def __init__(
        self,
        engine: Engine,
        lease_seconds: float = 30.0,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        # Autocommit: one round trip per statement instead of BEGIN + statement + COMMIT.
        # Correctness does not need a transaction: every write is a single atomic statement.
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._lease = timedelta(seconds=lease_seconds)
        self._clock = clock
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    def claim(self, connection_id: str, key: str, event_id: str) -> Claim:
        """Claim a delivery for publishing; see :class:`ClaimOutcome` for what to answer.

        A pending claim older than the lease (its receiver died before confirming) is taken
        over; of several processes trying at once exactly one wins.
        """
        if len(event_id) > _MAX_KEY_LENGTH:
            raise ValueError(f"event_id is longer than {_MAX_KEY_LENGTH} characters")
        key = _storage_key(key)
        now = self._clock()
        insert = (
            self._insert(_table)
            .values(
                connection_id=connection_id,
                idempotency_key=key,
                event_id=event_id,
                state="pending",
                claimed_at=now,
                confirmed_at=None,
            )
            .on_conflict_do_nothing(index_elements=[_c.connection_id, _c.idempotency_key])
            # SQLAlchemy only keeps the row count of UPDATE/DELETE unless asked to.
            .execution_options(preserve_rowcount=True)
        )
        where_key = (_c.connection_id == connection_id, _c.idempotency_key == key)
        with self._engine.connect() as conn:
            # The row can vanish between the insert and the read (released by its owner);
            # then the insert is simply tried again.
            for _ in range(_MAX_ATTEMPTS):
                if conn.execute(insert).rowcount == 1:
                    return Claim(ClaimOutcome.NEW, event_id)
                row = conn.execute(select(_c.state, _c.event_id, _c.claimed_at).where(*where_key)).first()
                if row is not None:
                    break
            else:
                return Claim(ClaimOutcome.IN_FLIGHT, event_id)
            if row.state == "confirmed":
                return Claim(ClaimOutcome.DUPLICATE, row.event_id)
            if row.claimed_at > now - self._lease:
                return Claim(ClaimOutcome.IN_FLIGHT, row.event_id)
            # Compare-and-set on the claim time we read: a competing taker that already
            # updated the row makes this match nothing, so only one caller gets NEW.
            taken = conn.execute(
                update(_table)
                .where(*where_key, _c.state == "pending", _c.claimed_at == row.claimed_at)
                .values(event_id=event_id, claimed_at=now)
            ).rowcount
        if taken == 1:
            return Claim(ClaimOutcome.NEW, event_id)
        return Claim(ClaimOutcome.IN_FLIGHT, row.event_id)

    def confirm(self, connection_id: str, key: str) -> None:
        """Mark a claimed delivery as accepted (the broker confirmed its event)."""
        with self._engine.connect() as conn:
            conn.execute(
                update(_table)
                .where(
                    _c.connection_id == connection_id,
                    _c.idempotency_key == _storage_key(key),
                    _c.state == "pending",
                )
                .values(state="confirmed", confirmed_at=self._clock())
            )

    def release(self, connection_id: str, key: str) -> None:
        """Drop a pending claim after a failed publish, so the sender's retry is accepted."""
        with self._engine.connect() as conn:
            conn.execute(
                delete(_table).where(
                    _c.connection_id == connection_id,
                    _c.idempotency_key == _storage_key(key),
                    _c.state == "pending",
                )
            )

    def purge_older_than(self, cutoff: datetime) -> int:
        """Delete deliveries claimed before ``cutoff``; return how many were removed."""
        with self._engine.connect() as conn:
            return conn.execute(delete(_table).where(_c.claimed_at < cutoff)).rowcount
