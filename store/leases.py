"""The SQL of a lease, for any table that keeps one in a holder column and an end-time column.

Claiming is a compare-and-set ``UPDATE`` whose ``WHERE`` is the "is it free?" check itself, so
no two holders win one row on SQLite or PostgreSQL, whatever runs in between. A row is free when
nobody holds it, its lease ran out, or (:meth:`LeaseColumns.dead_holders`) its holder died on
this node. Every leased table leases through this one class: Intacct slots, backfill runs,
reconcile watermarks, payment postings' claims, dead letters being replayed and the breakers'
probe; the holder format and the dead-holder check are ``reliability.leases``'.

The rows a call acts on are named by column values (``{"company_id": c, "slot": 0}``) or, for
a set of rows, by a condition (``table.c.letter_id.in_(ids)``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import Column, ColumnElement, Connection, Table, Update, and_, or_, select, true, update

from reliability.leases import holder_is_dead

Key = Mapping[str, Any]
# Which rows: column values by name, or any condition on the table.
Rows = Key | ColumnElement[bool]


class LeaseColumns:
    """The lease of ``table``'s rows: rows named by ``keys``, held in ``holder`` until ``until``.

    A lease ends at the instant ``until``: from then on the row is free. With
    ``held_through_end`` it is still held at that instant and free only after it (the breakers'
    probe claim was written so).
    """

    def __init__(
        self,
        table: Table,
        *,
        holder: str = "holder",
        until: str = "leased_until",
        clock: Callable[[], float] = time.time,
        held_through_end: bool = False,
    ) -> None:
        self.table = table
        self.holder: Column = table.c[holder]
        self.until: Column = table.c[until]
        self.clock = clock
        self.held_through_end = held_through_end

    def free(self, now: float, dead: Iterable[str] = ()) -> ColumnElement[bool]:
        """Nobody holds it, the lease ran out, or its holder is one of ``dead``."""
        ran_out = self.until < now if self.held_through_end else self.until <= now
        clauses = [self.holder.is_(None), self.until.is_(None), ran_out]
        dead = list(dead)
        if dead:
            clauses.append(self.holder.in_(dead))
        return or_(*clauses)

    def free_now(self, conn: Connection, rows: Rows, *, also: Iterable[str] = ()) -> ColumnElement[bool]:
        """:meth:`free` at this moment, for ``rows``: a holder that died on this node counts as
        gone, and so do the holders ``also`` names (a claimant itself, one known to be dead)."""
        return self.free(self.clock(), [*self.dead_holders(conn, rows), *also])

    def live(self, now: float) -> ColumnElement[bool]:
        """Held by someone at ``now``, the lease not yet run out."""
        running = self.until >= now if self.held_through_end else self.until > now
        return and_(self.holder.is_not(None), running)

    def held(self, holder: str | None, *, live: bool = False) -> ColumnElement[bool]:
        """Held by ``holder`` (and, with ``live``, its lease not yet run out)."""
        if live:
            # Strictly before the end: from that instant on, :meth:`free` lets another claim it.
            return and_(self.holder == holder, self.live(self.clock()))
        return self.holder == holder

    def unheld(self) -> dict[str, None]:
        """The column values of a row nobody holds (to write beside other changes)."""
        return {self.holder.name: None, self.until.name: None}

    def claim(
        self,
        conn: Connection,
        key: Key,
        holder: str,
        seconds: float,
        *,
        free: ColumnElement[bool] | None = None,
        values: Mapping[str, Any] | None = None,
        where: Iterable[ColumnElement[bool]] = (),
        now: float | None = None,
    ) -> bool:
        """Take the row for ``seconds`` if ``free`` (by default :meth:`free` now) and ``where``
        holds; True if taken. ``now`` is the caller's clock reading, for a caller that keeps one."""
        return conn.execute(self._claim(key, holder, seconds, free, values, where, now)).rowcount == 1

    def claim_or_take_over(
        self,
        conn: Connection,
        key: Key,
        holder: str,
        seconds: float,
        *,
        free: ColumnElement[bool] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> bool:
        """:meth:`claim` the row; while someone holds it, take it from that holder if it died on
        this node. The holder is looked up only when the claim fails: the usual claim costs one
        statement."""
        if self.claim(conn, key, holder, seconds, free=free, values=values):
            return True
        current = conn.execute(select(self.holder).where(self._rows(key))).scalar_one_or_none()
        if current is None or not holder_is_dead(current):
            return False  # free again (released in between: the caller comes back), or alive
        # Only while that dead holder still has it: another claimant may have been quicker.
        return self.claim(conn, key, holder, seconds, free=self.holder == current, values=values)

    def claim_many(
        self,
        conn: Connection,
        rows: Rows,
        holder: str,
        seconds: float,
        *,
        returning: ColumnElement[Any],
        free: ColumnElement[bool] | None = None,
        where: Iterable[ColumnElement[bool]] = (),
    ) -> list[Any]:
        """Take every free row of ``rows`` for ``seconds``; ``returning``'s values of those taken."""
        statement = self._claim(rows, holder, seconds, free, None, where, None).returning(returning)
        return list(conn.execute(statement).scalars())

    def renew(
        self,
        conn: Connection,
        key: Key,
        holder: str,
        seconds: float,
        *,
        live: bool = False,
        where: Iterable[ColumnElement[bool]] = (),
    ) -> bool:
        """Extend ``holder``'s lease to ``seconds`` from now; False when the row is not its any more."""
        return self.write(
            conn, key, holder, {self.until.name: self.clock() + seconds}, live=live, where=where
        )

    def write(
        self,
        conn: Connection,
        key: Key,
        holder: str | None,
        values: Mapping[str, Any],
        *,
        live: bool = False,
        where: Iterable[ColumnElement[bool]] = (),
    ) -> bool:
        """Write ``values`` only while ``holder`` holds the row; False (nothing written) otherwise."""
        return self.write_many(conn, key, holder, values, live=live, where=where) == 1

    def write_many(
        self,
        conn: Connection,
        rows: Rows,
        holder: str | None,
        values: Mapping[str, Any],
        *,
        live: bool = False,
        where: Iterable[ColumnElement[bool]] = (),
    ) -> int:
        """:meth:`write` on each of ``rows`` that ``holder`` holds; how many were written."""
        return conn.execute(
            update(self.table)
            .where(self._rows(rows), self.held(holder, live=live), *where)
            .values(dict(values))
        ).rowcount

    def release(
        self,
        conn: Connection,
        key: Key,
        holder: str | None,
        *,
        values: Mapping[str, Any] | None = None,
        where: Iterable[ColumnElement[bool]] = (),
    ) -> bool:
        """Give the row up (with ``values``) if still ``holder``'s; after its lease ran out it may not be."""
        return self.release_many(conn, key, holder, values=values, where=where) == 1

    def release_many(
        self,
        conn: Connection,
        rows: Rows,
        holder: str | None,
        *,
        values: Mapping[str, Any] | None = None,
        where: Iterable[ColumnElement[bool]] = (),
    ) -> int:
        """:meth:`release` each of ``rows`` still ``holder``'s; how many were given up."""
        return self.write_many(conn, rows, holder, {**self.unheld(), **(values or {})}, where=where)

    def dead_holders(self, conn: Connection, rows: Rows) -> list[str]:
        """The holders of ``rows`` that died on this node (``reliability.leases``)."""
        held = conn.execute(
            select(self.holder).distinct().where(self._rows(rows), self.holder.is_not(None))
        ).scalars()
        return [holder for holder in held if holder_is_dead(holder)]

    def _claim(
        self,
        rows: Rows,
        holder: str,
        seconds: float,
        free: ColumnElement[bool] | None,
        values: Mapping[str, Any] | None,
        where: Iterable[ColumnElement[bool]],
        now: float | None,
    ) -> Update:
        now = self.clock() if now is None else now
        condition = self.free(now) if free is None else free
        return (
            update(self.table)
            .where(self._rows(rows), condition, *where)
            .values({self.holder.name: holder, self.until.name: now + seconds, **(values or {})})
        )

    def _rows(self, rows: Rows) -> ColumnElement[bool]:
        if isinstance(rows, ColumnElement):
            return rows
        return and_(true(), *(self.table.c[name] == value for name, value in rows.items()))
