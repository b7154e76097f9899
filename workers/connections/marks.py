"""Which connect or disconnect request is the newest for a connection, so old ones change nothing.

FlexPoint's messages can arrive late (a replay, a trip through a delay queue, another consumer
that was slower). Each message is compared by ``requestedAt`` with the newest one already taken
on for its connection: an older one is stale and ignored, so a stale connect replayed after a
disconnect cannot connect again. The claim is one atomic upsert, safe across processes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Engine, Table, and_, or_, select

from store.db import conflict_insert
from store.models import ProvisioningMark

# SQLAlchemy types __table__ as a FromClause; a declarative model's is always a Table.
_table = cast(Table, ProvisioningMark.__table__)
_c = _table.c


@dataclass(frozen=True)
class Mark:
    """The newest request taken on for a connection."""

    connection_id: str
    requested_at: datetime
    kind: str
    message_id: str


class ProvisioningMarks:
    """Claims requests in ``requestedAt`` order per connection."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._engine = engine
        self._clock = clock
        self._insert = conflict_insert(engine)

    def claim(self, connection_id: str, requested_at: datetime, kind: str, message_id: str) -> bool:
        """Take the request on if it is not older than the newest one seen; False when it is stale.

        The same message again (a retry, a replay) is taken on again: handling it is idempotent.
        At an equal ``requestedAt`` a disconnect wins over a connect, the safer of the two.
        """
        statement = self._insert(_table).values(
            connection_id=connection_id,
            requested_at=requested_at,
            kind=kind,
            message_id=message_id,
            updated_at=self._clock(),
        )
        new = statement.excluded
        newer_or_same = or_(
            _c.requested_at < new.requested_at,
            and_(
                _c.requested_at == new.requested_at,
                or_(_c.message_id == new.message_id, new.kind == "disconnect"),
            ),
        )
        upsert = statement.on_conflict_do_update(
            index_elements=[_c.connection_id],
            set_={
                "requested_at": new.requested_at,
                "kind": new.kind,
                "message_id": new.message_id,
                "updated_at": new.updated_at,
            },
            where=newer_or_same,
        ).returning(_c.message_id)
        with self._engine.begin() as conn:
            return conn.execute(upsert).first() is not None

    def current(self, connection_id: str) -> Mark | None:
        """The newest request taken on for the connection, or None."""
        with self._engine.connect() as conn:
            row = conn.execute(select(_table).where(_c.connection_id == connection_id)).first()
        if row is None:
            return None
        return Mark(row.connection_id, row.requested_at, row.kind, row.message_id)
