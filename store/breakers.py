"""The rows behind the circuit breakers: one per peer, changed by single short transactions.

The policy (when to open, when to probe) is ``reliability.breaker``'s; this module only reads
and writes the state so that every process on every host sees the same breaker. The probe of an
open peer is a lease (``probe_holder`` until ``probe_until``, store/leases.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from sqlalchemy import Engine, Table, select, update

from reliability.breaker import CLOSED, OPEN, BreakerState, closed_state
from store.db import write_transaction
from store.leases import LeaseColumns
from store.models import PeerBreaker

# SQLAlchemy types __table__ as a FromClause; a declarative model's is always a Table.
_table = cast(Table, PeerBreaker.__table__)
_c = _table.c
# The probe claim is still held at the instant it ends, and free only after it.
_probe = LeaseColumns(_table, holder="probe_holder", until="probe_until", held_through_end=True)

__all__ = ["BreakerState", "BreakerStore"]


class BreakerStore:
    """Reads and changes breaker rows; every change is one transaction
    (``reliability.breaker.BreakerStorage``)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, peer: str) -> BreakerState | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(_table).where(_c.peer == peer)).first()
        return None if row is None else _state(row)

    def all(self) -> list[BreakerState]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(_table).order_by(_c.peer)).all()
        return [_state(row) for row in rows]

    def claim_probe(self, peer: str, holder: str, now: float, seconds: float) -> bool:
        """Become for ``seconds`` the one process allowed to try an open peer now; False if it is
        not due or taken."""
        with write_transaction(self._engine) as conn:
            return _probe.claim(
                conn,
                {"peer": peer},
                holder,
                seconds,
                now=now,
                where=(_c.state == OPEN, _c.probe_at <= now),
                values={"probes": _c.probes + 1, "updated_at": now},
            )

    def record_failure(
        self,
        peer: str,
        reason: str,
        now: float,
        *,
        probe: bool,
        threshold: int,
        next_probe: Callable[[int], float],
    ) -> BreakerState:
        """Count a transient failure; open (or keep open, probing later) as the policy says.

        ``next_probe(openings)`` gives the seconds until the next probe after that many openings.
        """
        with write_transaction(self._engine) as conn:
            row = conn.execute(select(_table).where(_c.peer == peer)).first()
            current = closed_state(peer, now) if row is None else _state(row)
            if current.open:
                if not probe:
                    return current  # a call that started before the breaker opened: already counted
                openings = current.openings + 1
                values = dict(
                    state=OPEN,
                    failures=current.failures + 1,
                    openings=openings,
                    opened_at=current.opened_at,
                    probe_at=now + next_probe(openings),
                    **_probe.unheld(),
                )
            elif current.failures + 1 >= threshold:
                values = dict(
                    state=OPEN,
                    failures=current.failures + 1,
                    openings=1,
                    opened_at=now,
                    probe_at=now + next_probe(1),
                    **_probe.unheld(),
                )
            else:
                values = dict(state=CLOSED, failures=current.failures + 1)
            values.update(last_reason=reason[:200], updated_at=now)
            if row is None:
                conn.execute(
                    _table.insert().values(peer=peer, openings=0, probes=0, **{**_defaults(), **values})
                )
            else:
                conn.execute(update(_table).where(_c.peer == peer).values(**values))
            row = conn.execute(select(_table).where(_c.peer == peer)).one()
            return _state(row)

    def record_success(self, peer: str, now: float) -> BreakerState | None:
        """Close the breaker and forget its failures; returns the state it had (None: no row)."""
        with write_transaction(self._engine) as conn:
            row = conn.execute(select(_table).where(_c.peer == peer)).first()
            if row is None:
                return None
            conn.execute(
                update(_table)
                .where(_c.peer == peer)
                .values(
                    state=CLOSED,
                    failures=0,
                    openings=0,
                    opened_at=None,
                    probe_at=None,
                    **_probe.unheld(),
                    updated_at=now,
                )
            )
            return _state(row)


def _defaults() -> dict:
    return dict(opened_at=None, probe_at=None, **_probe.unheld())


def _state(row) -> BreakerState:
    return BreakerState(
        peer=row.peer,
        state=row.state,
        failures=row.failures or 0,
        openings=row.openings or 0,
        opened_at=row.opened_at,
        probe_at=row.probe_at,
        probe_holder=row.probe_holder,
        probe_until=row.probe_until,
        last_reason=row.last_reason,
        probes=row.probes or 0,
        updated_at=row.updated_at,
    )
