"""The SQL of a lease, for any table that keeps one in a holder column and an end-time column.

Claiming is a compare-and-set ``UPDATE`` whose ``WHERE`` is the "is it free?" check itself, so
no two holders win one row on SQLite or PostgreSQL, whatever runs in between. A row is free when
nobody holds it, its lease ran out, or (:meth:`LeaseColumns.dead_holders`) its holder died on
this node. Every leased table leases through this one class: Intacct slots, backfill runs,
reconcile watermarks, payment postings' claims, dead letters being replayed and the breakers'
probe; the holder format and the dead-holder check are ``reliability.leases``'.

The rows a call acts on are named by column values (``{"company_id": c, "slot": 0}``) or, for
a set of rows, by a condition (``table.c.letter_id.in_(ids)``). A hot path runs the same SQL as
statements built once (:meth:`LeaseColumns.prepared`): building a statement costs several times
running it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import (
    BindParameter,
    Column,
    ColumnElement,
    Connection,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    or_,
    select,
    true,
    update,
)

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

    def prepared(self, *key: str) -> PreparedLease:
        """This lease's statements on one row named by the ``key`` columns, built once."""
        return PreparedLease(self, key)

    def free(self, now: float | BindParameter[Any], dead: Iterable[str] = ()) -> ColumnElement[bool]:
        """Nobody holds it, the lease ran out, or its holder is one of ``dead``."""
        ran_out = self.until < now if self.held_through_end else self.until <= now
        clauses = [self.holder.is_(None), self.until.is_(None), ran_out]
        dead = list(dead)
        if dead:
            clauses.append(self.holder.in_(dead))
        return or_(*clauses)

    def is_free(self, holder: str | None, until: float | None, now: float) -> bool:
        """:meth:`free` at ``now`` (without dead holders) for a row already read."""
        if holder is None or until is None:
            return True
        return until < now if self.held_through_end else until <= now

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


class PreparedLease:
    """The statements of :class:`LeaseColumns` on one row named by its ``key`` columns, built once
    with bind parameters, so running one costs no statement building (on SQLite, one thread:
    0.73 ms to build and run a slot's SELECT, 0.16 ms to run one built before).

    Each runs with :meth:`params`: the row's key values, and the statement's own values:

    * ``claim``: ``now``, ``holder``, ``until``; taken if free at ``now`` (as :meth:`LeaseColumns.claim`).
    * ``take_over``: ``owner`` (a dead holder), ``holder``, ``until``; taken while ``owner`` has it.
    * ``write``: ``owner``, and the columns to set by name; written while ``owner`` holds the row
      (as :meth:`LeaseColumns.write`, without ``live``).
    * ``release``: ``owner``; given up while ``owner`` holds it (as :meth:`LeaseColumns.release`).

    A caller adds what it needs to a statement (``.returning(...)``) once, where it keeps it.
    """

    def __init__(self, leases: LeaseColumns, key: tuple[str, ...]) -> None:
        table = leases.table
        self.key = key
        row = and_(*(table.c[name] == bindparam(f"key__{name}") for name in key))
        taken: dict[str, Any] = {
            leases.holder.name: bindparam("lease__holder"),
            leases.until.name: bindparam("lease__until"),
        }
        owned = leases.holder == bindparam("lease__owner")
        self.claim: Update = update(table).where(row, leases.free(bindparam("lease__now"))).values(taken)
        self.take_over: Update = update(table).where(row, owned).values(taken)
        self.write: Update = update(table).where(row, owned)
        self.release: Update = update(table).where(row, owned).values(leases.unheld())
        self.holder_of: Select[Any] = select(leases.holder).where(row)

    def params(self, key: Key, values: Mapping[str, Any] | None = None, **lease: Any) -> dict[str, Any]:
        """The bind values: the row's ``key`` values, ``lease`` values (``now``, ``holder``,
        ``until``, ``owner``) and the columns ``values`` to set."""
        bound = {f"key__{name}": key[name] for name in self.key}
        bound.update((f"lease__{name}", value) for name, value in lease.items())
        if values:
            bound.update(values)
        return bound
