"""Gap signals: times the service knew webhooks may have been lost, and the receivers' heartbeats.

A *gap* is a window in which Intacct may have given up on a webhook: the receiver answered 5xx
(one connection), the receiver was down (a silence in every receiver's heartbeat) or the broker
was away (all connections). The reconcile scheduler sweeps the affected companies soon after a
gap; without one it sweeps rarely (see ``workers/reconcile/schedule.py``).

The receiver's hot path never writes here: :class:`GapReporter` notes signals in memory and one
thread per process flushes them every few seconds and writes the heartbeat, so an outage costs
at most one insert per signal kind and connection per flush.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import Engine, Table, delete, func, insert, or_, select, update

from observability.logging import get_logger
from store.models import ReceiverHeartbeat, ReconcileGap

log = get_logger(__name__)

# SQLAlchemy types __table__ as a FromClause; a declarative model's is always a Table.
_gaps = cast(Table, ReconcileGap.__table__)
_beats = cast(Table, ReceiverHeartbeat.__table__)

RECEIVER_5XX = "receiver_5xx"
RECEIVER_DOWN = "receiver_down"
BROKER_AWAY = "broker_away"
HEARTBEAT_EVERY = timedelta(seconds=30)
# Intacct retries for ~130 s (10, 30, 90 s): a silence shorter than that loses nothing, and a
# bound of 2.5 heartbeats is well under it, so every silence that can lose a webhook is a gap.
DOWN_AFTER = timedelta(seconds=75)
FLUSH_EVERY = 5.0


@dataclass(frozen=True)
class Gap:
    """One recorded gap; ``connection_id`` None concerns every connection."""

    kind: str
    connection_id: str | None
    started_at: datetime
    ended_at: datetime


class GapStore:
    """Records and reads gaps and heartbeats; every write is one short statement."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def record(self, kind: str, connection_id: str | None, started_at: datetime, ended_at: datetime) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                insert(_gaps).values(
                    kind=kind, connection_id=connection_id, started_at=started_at, ended_at=ended_at
                )
            )

    def since(self, moment: datetime, connection_ids: list[str] | None = None) -> list[Gap]:
        """Gaps that ended at or after ``moment`` (of these connections, or of all), oldest first."""
        query = select(_gaps).where(_gaps.c.ended_at >= moment).order_by(_gaps.c.ended_at)
        if connection_ids is not None:
            query = query.where(
                or_(_gaps.c.connection_id.is_(None), _gaps.c.connection_id.in_(connection_ids))
            )
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [Gap(r.kind, r.connection_id, r.started_at, r.ended_at) for r in rows]

    def prune(self, before: datetime) -> int:
        """Forget gaps that ended, and heartbeats last seen, before ``before``."""
        with self._engine.begin() as conn:
            removed = conn.execute(delete(_gaps).where(_gaps.c.ended_at < before)).rowcount
            conn.execute(delete(_beats).where(_beats.c.beat_at < before))
        return removed

    def newest_beat(self, *, excluding: str | None = None) -> datetime | None:
        """When any receiver (other than ``excluding``) last beat; None when none ever did."""
        query = select(func.max(_beats.c.beat_at))
        if excluding is not None:
            query = query.where(_beats.c.holder != excluding)
        with self._engine.connect() as conn:
            return conn.execute(query).scalar()

    def beat(self, holder: str, at: datetime) -> None:
        with self._engine.begin() as conn:
            if not conn.execute(update(_beats).where(_beats.c.holder == holder).values(beat_at=at)).rowcount:
                conn.execute(insert(_beats).values(holder=holder, beat_at=at))


class GapReporter:
    """A receiver process's side: note signals cheaply, flush them and beat from one thread."""

    def __init__(
        self,
        store: GapStore,
        holder: str,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        down_after: timedelta = DOWN_AFTER,
    ) -> None:
        self._store = store
        self._holder = holder
        self._clock = clock
        self._down_after = down_after
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str | None], tuple[datetime, datetime]] = {}
        self._beaten_at: datetime | None = None

    def report(self, kind: str, connection_id: str | None = None) -> None:
        """Note a signal now (no I/O: safe on a request thread or the publisher's I/O loop)."""
        now = self._clock()
        with self._lock:
            first, _ = self._pending.get((kind, connection_id), (now, now))
            self._pending[(kind, connection_id)] = (first, now)

    def broker_lost(self) -> None:
        self.report(BROKER_AWAY)

    def flush(self) -> None:
        """Write the noted signals, and the heartbeat when due; a failure keeps them for next time."""
        with self._lock:
            pending, self._pending = self._pending, {}
        try:
            for (kind, connection_id), (first, last) in pending.items():
                self._store.record(kind, connection_id, first, last)
            now = self._clock()
            if self._beaten_at is None or now - self._beaten_at >= HEARTBEAT_EVERY:
                self._beat(now)
        except Exception as exc:
            with self._lock:
                for key, (first, last) in pending.items():
                    earlier = self._pending.get(key, (first, last))
                    self._pending[key] = (min(first, earlier[0]), max(last, earlier[1]))
            log.warning("gap_flush_failed", error_type=type(exc).__name__, error=str(exc)[:200])

    def _beat(self, now: datetime) -> None:
        if self._beaten_at is None:
            # Starting: a silence of every receiver since the newest beat is a time nobody answered.
            newest = self._store.newest_beat(excluding=self._holder)
            if newest is not None and now - newest > self._down_after:
                self._store.record(RECEIVER_DOWN, None, newest, now)
                log.info("gap_recorded", kind=RECEIVER_DOWN, since=newest.isoformat())
        self._store.beat(self._holder, now)
        self._beaten_at = now

    def run(self, stop: threading.Event, every: float = FLUSH_EVERY) -> None:
        """Flush every ``every`` seconds until ``stop``, then once more."""
        self.flush()
        while not stop.wait(every):
            self.flush()
        self.flush()

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="gap-reporter", daemon=True)
        thread.start()
        return thread
