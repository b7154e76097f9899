"""The ``dead_letters`` table: letters stored once each, browsed, counted and settled by state.

A letter is ``stored`` until it is ``replayed`` (its copy confirmed in a work queue) or
``purged``; rows are kept afterwards, so an interrupted replay run again never moves a letter
twice and the console can show what happened to each one. A replay claims the letters it is
about to publish (a lease, store/leases.py), so two replays run at once (two operators, the CLI
and the console) never publish one letter twice, and a purge leaves them alone meanwhile.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, Select, func, or_, select, update
from sqlalchemy.orm import Session

from broker.topology import PROVISIONING_QUEUE_NAME
from store.db import conflict_insert, write_transaction
from store.leases import LeaseColumns
from store.models import ArchiveReplayClaim, DeadLetterRecord
from workers.connections.messages import without_password

STORED, REPLAYED, PURGED = "stored", "replayed", "purged"
# How long a replay holds the letters it claimed: publishing a chunk and waiting for its
# confirms (30 s at most) fits well inside. A replay that dies holding letters frees them when
# this runs out, or at once for the next run on its own host (its process is gone).
CLAIM_SECONDS = 120.0


# FlexPoint's reasons were spelled flex_point_* by the sync until issue 30 (flexpoint_* by the
# provisioning and writeback workers and the runbook); letters parked before keep the old one.
_OLD_FLEXPOINT, _FLEXPOINT = "flex_point_", "flexpoint_"


def reason_spellings(reason: str) -> tuple[str, ...]:
    """``reason`` and, for a FlexPoint reason, its other spelling: what ``--reason`` selects."""
    for one, other in ((_OLD_FLEXPOINT, _FLEXPOINT), (_FLEXPOINT, _OLD_FLEXPOINT)):
        if reason.startswith(one):
            return (reason, other + reason[len(one) :])
    return (reason,)


# Any select, whatever its columns: apply keeps the columns' types for the caller.
_Query = TypeVar("_Query", bound="Select[*tuple[Any, ...]]")


@dataclass(frozen=True)
class LetterQuery:
    """Filters on stored letters; each one that is set must match (``reason`` also matches
    ``reason:detail``, and a FlexPoint reason its old spelling; ``ids`` are prefixes of letter
    ids). Both are matched as written: a ``%`` or ``_`` in them is escaped, never a LIKE wildcard."""

    connection: str | None = None
    resource: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    ids: tuple[str, ...] = ()
    state: str | None = STORED

    def apply(self, query: _Query) -> _Query:
        table = DeadLetterRecord
        if self.state is not None:
            query = query.where(table.state == self.state)
        if self.connection is not None:
            query = query.where(table.connection_id == self.connection)
        if self.resource is not None:
            query = query.where(table.resource == self.resource)
        if self.reason is not None:
            query = query.where(
                or_(
                    *(
                        match
                        for reason in reason_spellings(self.reason)
                        for match in (
                            table.reason == reason,
                            table.reason.startswith(reason + ":", autoescape=True),
                        )
                    )
                )
            )
        if self.since is not None:
            query = query.where(table.failed_at >= self.since)
        if self.until is not None:
            query = query.where(table.failed_at < self.until)
        if self.ids:
            query = query.where(
                or_(*(table.letter_id.startswith(prefix, autoescape=True) for prefix in self.ids))
            )
        return query


@dataclass(frozen=True)
class Counts:
    total: int
    by_reason: collections.Counter[str]
    by_resource: collections.Counter[str]


# How long an archive replay holds its range without renewing (it renews every
# ARCHIVE_RENEW_SECONDS while it reads): one that dies frees it when this runs out, or at once
# for the next run on its own host (its process is gone).
ARCHIVE_CLAIM_SECONDS = 120.0
ARCHIVE_RENEW_SECONDS = 30.0


class ArchiveClaims:
    """The claims of archive replays on their ranges (``archive_replay_claims``)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._leases = LeaseColumns(ArchiveReplayClaim.__table__)  # type: ignore[arg-type]

    @staticmethod
    def range_key(connection: str | None, resource: str | None) -> str:
        return f"{connection or '*'}/{resource or '*'}"

    def claim(
        self, range_key: str, holder: str, described: str, *, seconds: float = ARCHIVE_CLAIM_SECONDS
    ) -> str | None:
        """Take the range for ``holder``; None when taken, else what the live holder replays."""
        insert = conflict_insert(self._engine)(ArchiveReplayClaim).values(range_key=range_key)
        key = {"range_key": range_key}
        with write_transaction(self._engine) as conn:
            conn.execute(insert.on_conflict_do_nothing(index_elements=["range_key"]))
            if self._leases.claim_or_take_over(conn, key, holder, seconds, values={"selection": described}):
                return None
            held = conn.execute(
                select(ArchiveReplayClaim.selection).where(ArchiveReplayClaim.range_key == range_key)
            ).scalar_one_or_none()
        return held or "another selection"

    def renew(self, range_key: str, holder: str, *, seconds: float = ARCHIVE_CLAIM_SECONDS) -> bool:
        """Extend ``holder``'s claim; False when it is not its any more (it ran out and was taken)."""
        with write_transaction(self._engine) as conn:
            return self._leases.renew(conn, {"range_key": range_key}, holder, seconds)

    def release(self, range_key: str, holder: str) -> None:
        with write_transaction(self._engine) as conn:
            self._leases.release(conn, {"range_key": range_key}, holder)


class DeadLetterStore:
    """Reads and writes the ``dead_letters`` table; safe from many threads and processes."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._leases = LeaseColumns(DeadLetterRecord.__table__)  # type: ignore[arg-type]

    @property
    def archive_claims(self) -> ArchiveClaims:
        """The archive replays' claims, in the same database."""
        return ArchiveClaims(self._engine)

    def add_many(self, rows: Sequence[dict[str, Any]]) -> int:
        """Insert letters in one transaction; one already stored is skipped. Returns how many were new."""
        if not rows:
            return 0
        statement = (
            conflict_insert(self._engine)(DeadLetterRecord)
            .on_conflict_do_nothing(index_elements=["letter_id"])
            .returning(DeadLetterRecord.letter_id)
        )
        # One statement compiled once for the batch ("insertmanyvalues"): no per-row compile.
        with write_transaction(self._engine) as conn:
            return len(conn.execute(statement, list(rows)).all())

    def strip_passwords(self) -> int:
        """Remove connect passwords from letters stored before the storer removed them (issue 30
        #4: those RabbitMQ dead-lettered itself kept theirs). Only connection messages can carry
        one: the letters of the provisioning queue are read. Returns how many were rewritten."""
        table = DeadLetterRecord
        with write_transaction(self._engine) as conn:
            rows = conn.execute(
                select(table.letter_id, table.body).where(table.original_queue == PROVISIONING_QUEUE_NAME)
            ).all()
            changed = 0
            for row in rows:
                body = without_password(row.body) if row.body else row.body
                if body != row.body:
                    conn.execute(update(table).where(table.letter_id == row.letter_id).values(body=body))
                    changed += 1
        return changed

    def find(
        self, query: LetterQuery, *, limit: int | None = None, offset: int = 0, after_seq: int = 0
    ) -> list[DeadLetterRecord]:
        """Matching letters in the order they were stored."""
        statement = query.apply(select(DeadLetterRecord)).where(DeadLetterRecord.seq > after_seq)
        statement = statement.order_by(DeadLetterRecord.seq).offset(offset)
        if limit is not None:
            statement = statement.limit(limit)
        with Session(self._engine) as session:
            rows = list(session.scalars(statement).all())
            session.expunge_all()
        return rows

    def count(self, query: LetterQuery) -> int:
        statement = query.apply(select(func.count()).select_from(DeadLetterRecord))
        with self._engine.connect() as conn:
            return conn.execute(statement).scalar_one()

    def counts(self, query: LetterQuery | None = None) -> Counts:
        """How many letters match, by reason and by resource (no envelope: ``(no envelope)``)."""
        query = query or LetterQuery()
        by_reason: collections.Counter[str] = collections.Counter()
        by_resource: collections.Counter[str] = collections.Counter()
        table = DeadLetterRecord
        with self._engine.connect() as conn:
            for reason, n in conn.execute(
                query.apply(select(table.reason, func.count())).group_by(table.reason)
            ).all():
                by_reason[reason] = n
            for resource, n in conn.execute(
                query.apply(select(table.resource, func.count())).group_by(table.resource)
            ).all():
                by_resource[resource or "(no envelope)"] = n
        return Counts(sum(by_reason.values()), by_reason, by_resource)

    def claim(self, letter_ids: Iterable[str], holder: str, *, seconds: float = CLAIM_SECONDS) -> list[str]:
        """Claim for ``holder`` the stored letters among ``letter_ids`` that no other live replay
        holds; returns the ids it now holds (in no particular order)."""
        ids = list(letter_ids)
        if not ids:
            return []
        table = DeadLetterRecord
        rows = table.letter_id.in_(ids)
        with write_transaction(self._engine) as conn:
            return self._leases.claim_many(
                conn,
                rows,
                holder,
                seconds,
                returning=self._leases.table.c.letter_id,
                free=self._leases.free_now(conn, rows),
                where=(table.state == STORED,),
            )

    def release(self, letter_ids: Iterable[str], holder: str) -> int:
        """Give up ``holder``'s claim on letters it did not settle (their copies failed)."""
        ids = list(letter_ids)
        if not ids:
            return 0
        with write_transaction(self._engine) as conn:
            return self._leases.release_many(conn, DeadLetterRecord.letter_id.in_(ids), holder)

    def settle(
        self, letter_ids: Iterable[str], state: str, *, now: datetime | None = None, holder: str | None = None
    ) -> int:
        """Mark stored letters replayed or purged (a purge blanks the body); a letter already
        settled is left alone.

        With ``holder``, only the letters it claimed (a replay settling its confirmed copies);
        without, only letters no live replay holds (a purge leaves those to their replay).
        """
        ids = list(letter_ids)
        if not ids:
            return 0
        moment = now or datetime.now(UTC)
        # A purged letter stays listed (what, why, when), but its body is deleted for good.
        stamp = {"replayed_at": moment} if state == REPLAYED else {"purged_at": moment, "body": b""}
        table = DeadLetterRecord
        rows = table.letter_id.in_(ids)
        stored = (table.state == STORED,)
        settled = {"state": state, **stamp}
        with write_transaction(self._engine) as conn:
            if holder is not None:
                return self._leases.release_many(conn, rows, holder, values=settled, where=stored)
            return conn.execute(
                update(table)
                .where(rows, *stored, self._leases.free_now(conn, rows))
                .values(**settled, **self._leases.unheld())
            ).rowcount

    def reasons(self) -> list[str]:
        """Every reason a stored letter has, whatever its state, sorted (the console's filter list)."""
        with self._engine.connect() as conn:
            return sorted(r for (r,) in conn.execute(select(DeadLetterRecord.reason).distinct()).all())

    def counts_by_connection(self, query: LetterQuery | None = None) -> dict[str, list[tuple[str, int]]]:
        """Letters matching ``query`` (default: those still stored) per connection and reason,
        the most frequent reason first; letters with no connection are under ``-``."""
        table = DeadLetterRecord
        statement = (query or LetterQuery()).apply(
            select(table.connection_id, table.reason, func.count()).group_by(
                table.connection_id, table.reason
            )
        )
        found: dict[str, list[tuple[str, int]]] = {}
        with self._engine.connect() as conn:
            for connection_id, reason, n in conn.execute(statement).all():
                found.setdefault(connection_id or "-", []).append((reason, n))
        return {key: sorted(value, key=lambda item: -item[1]) for key, value in found.items()}
