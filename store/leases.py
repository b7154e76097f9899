"""The SQL of a lease, for any table that keeps one in a holder column and an end-time column.

Claiming is a compare-and-set ``UPDATE`` whose ``WHERE`` is the "is it free?" check itself, so
no two holders win one row on SQLite or PostgreSQL, whatever runs in between. A row is free when
nobody holds it, its lease ran out, or (:meth:`LeaseColumns.dead_holders`) its holder died on
this node. Slots, backfill runs and reconcile watermarks all lease through this one class; the
holder format and the dead-holder check are ``reliability.leases``'.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import Column, ColumnElement, Connection, Table, and_, or_, select, true, update

from reliability.leases import holder_is_dead

Key = Mapping[str, Any]


class LeaseColumns:
    """The lease of ``table``'s rows: rows named by ``keys``, held in ``holder`` until ``until``."""

    def __init__(
        self,
        table: Table,
        *,
        holder: str = "holder",
        until: str = "leased_until",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = table
        self.holder: Column = table.c[holder]
        self.until: Column = table.c[until]
        self.clock = clock

    def free(self, now: float, dead: Iterable[str] = ()) -> ColumnElement[bool]:
        """Nobody holds it, the lease ran out, or its holder is one of ``dead``."""
        clauses = [self.holder.is_(None), self.until.is_(None), self.until <= now]
        dead = list(dead)
        if dead:
            clauses.append(self.holder.in_(dead))
        return or_(*clauses)

    def held(self, holder: str, *, live: bool = False) -> ColumnElement[bool]:
        """Held by ``holder`` (and, with ``live``, its lease not yet run out)."""
        if live:
            # Strictly before the end: from that instant on, :meth:`free` lets another claim it.
            return and_(self.holder == holder, self.until > self.clock())
        return self.holder == holder

    def claim(
        self,
        conn: Connection,
        key: Key,
        holder: str,
        seconds: float,
        *,
        free: ColumnElement[bool] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> bool:
        """Take the row for ``seconds`` if ``free`` (by default :meth:`free` now); True if taken."""
        now = self.clock()
        condition = self.free(now) if free is None else free
        changed = conn.execute(
            update(self.table)
            .where(self._key(key), condition)
            .values({self.holder.name: holder, self.until.name: now + seconds, **(values or {})})
        ).rowcount
        return changed == 1

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
        holder: str,
        values: Mapping[str, Any],
        *,
        live: bool = False,
        where: Iterable[ColumnElement[bool]] = (),
    ) -> bool:
        """Write ``values`` only while ``holder`` holds the row; False (nothing written) otherwise."""
        changed = conn.execute(
            update(self.table)
            .where(self._key(key), self.held(holder, live=live), *where)
            .values(dict(values))
        ).rowcount
        return changed == 1

    def release(
        self,
        conn: Connection,
        key: Key,
        holder: str,
        *,
        values: Mapping[str, Any] | None = None,
        where: Iterable[ColumnElement[bool]] = (),
    ) -> bool:
        """Give the row up (with ``values``) if still ``holder``'s; after its lease ran out it may not be."""
        released = {self.holder.name: None, self.until.name: None, **(values or {})}
        return self.write(conn, key, holder, released, where=where)

    def dead_holders(self, conn: Connection, key: Key) -> list[str]:
        """The holders of the rows matching ``key`` that died on this node (``reliability.leases``)."""
        held = conn.execute(
            select(self.holder).distinct().where(self._key(key), self.holder.is_not(None))
        ).scalars()
        return [holder for holder in held if holder_is_dead(holder)]

    def _key(self, key: Key) -> ColumnElement[bool]:
        return and_(true(), *(self.table.c[name] == value for name, value in key.items()))
