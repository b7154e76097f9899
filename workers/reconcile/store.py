"""Reconciliation watermarks per connection and resource, with the lease that guards each sweep.

A reconcile process *claims* a (connection, resource) before sweeping it, through
``store.leases``: the claim succeeds when nobody holds the lease, the holder's lease ran out, or
the holder died on this node. While sweeping it renews
the lease; it *advances* the watermark only while still the holder, and releases at the end.
Every write is one statement, so two processes racing for a claim get one winner on SQLite and
PostgreSQL alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Engine, Table, case, func, select

from reliability.errors import LeaseLost
from store.db import conflict_insert
from store.leases import LeaseColumns
from store.models import ReconcileWatermark

# SQLAlchemy types __table__ as a FromClause; a declarative model's is always a Table.
_table = cast(Table, ReconcileWatermark.__table__)
_c = _table.c

__all__ = ["LeaseLost", "Watermark", "WatermarkStore"]


@dataclass(frozen=True)
class Watermark:
    """What is stored for one (connection, resource); None fields were never set."""

    connection_id: str
    resource: str
    modified_since: datetime | None
    swept_at: datetime | None
    keyset_checked_at: datetime | None


class WatermarkStore:
    """Reads, claims and advances watermarks; ``clock`` (unix seconds) times the leases."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock
        self._insert = conflict_insert(engine)
        self._leases = LeaseColumns(_table, holder="lease_holder", clock=clock)

    def get(self, connection_id: str, resource: str) -> Watermark | None:
        """The stored watermark, or None when the resource was never swept nor claimed."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(_table).where(_c.connection_id == connection_id, _c.resource == resource)
            ).first()
        return None if row is None else _watermark(row)

    def all(self) -> dict[tuple[str, str], Watermark]:
        """Every stored watermark by (connection, resource): what the scheduler decides from."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(_table)).all()
        return {(row.connection_id, row.resource): _watermark(row) for row in rows}

    def claim(self, connection_id: str, resource: str, holder: str, ttl: float) -> Watermark | None:
        """Take the lease for ``ttl`` seconds and return the watermark; None if someone else holds it."""
        key = {"connection_id": connection_id, "resource": resource}
        with self._engine.begin() as conn:
            conn.execute(
                self._insert(_table)
                .values(connection_id=connection_id, resource=resource)
                .on_conflict_do_nothing(index_elements=[_c.connection_id, _c.resource])
            )
            # A claim again by the holder itself renews it; a dead local holder's is taken at once.
            free = self._leases.free_now(conn, key, also=[holder])
            if not self._leases.claim(conn, key, holder, ttl, free=free):
                return None
            row = conn.execute(
                select(_table).where(_c.connection_id == connection_id, _c.resource == resource)
            ).one()
        return _watermark(row)

    def renew(self, connection_id: str, resource: str, holder: str, ttl: float) -> None:
        """Extend our lease by ``ttl`` seconds from now; :class:`LeaseLost` if it is not ours any more."""
        self._update_held(connection_id, resource, holder, leased_until=self._clock() + ttl)

    def advance(
        self,
        connection_id: str,
        resource: str,
        holder: str,
        *,
        modified_since: datetime,
        swept_at: datetime,
        keyset_checked_at: datetime | None = None,
    ) -> Watermark:
        """Record a finished sweep; the watermark never moves back. :class:`LeaseLost` if not held."""
        current = self.get(connection_id, resource)
        if current is not None and current.modified_since is not None:
            modified_since = max(modified_since, current.modified_since)
        values: dict = {"modified_since": modified_since, "swept_at": swept_at}
        if keyset_checked_at is not None:
            values["keyset_checked_at"] = keyset_checked_at
        self._update_held(connection_id, resource, holder, **values)
        advanced = self.get(connection_id, resource)
        assert advanced is not None
        return advanced

    def release(self, connection_id: str, resource: str, holder: str) -> None:
        """Give the lease up (nothing happens when it is not ours)."""
        with self._engine.begin() as conn:
            self._leases.release(conn, {"connection_id": connection_id, "resource": resource}, holder)

    def _update_held(self, connection_id: str, resource: str, holder: str, **values: object) -> None:
        # Still ours only while unexpired: a holder that stalled past its lease may have been
        # replaced, and must not write over its successor.
        key = {"connection_id": connection_id, "resource": resource}
        with self._engine.begin() as conn:
            changed = self._leases.write(conn, key, holder, values, live=True)
        if not changed:
            raise LeaseLost(f"the reconcile lease on {connection_id}/{resource} is no longer held by us")

    def lowest_marks(self) -> dict[str, tuple[Any, int]]:
        """Per connection, its oldest watermark and how many of its resources never swept (a
        resource with no watermark yet would be skipped by the minimum)."""
        query = select(
            _c.connection_id,
            func.min(_c.modified_since),
            func.sum(case((_c.modified_since.is_(None), 1), else_=0)),
        ).group_by(_c.connection_id)
        with self._engine.connect() as conn:
            return {cid: (mark, int(unswept or 0)) for cid, mark, unswept in conn.execute(query).all()}


def _watermark(row) -> Watermark:
    # The dataclass's fields are columns of the row, by name.
    return Watermark(**{field.name: row._mapping[field.name] for field in fields(Watermark)})
