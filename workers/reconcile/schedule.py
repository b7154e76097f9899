"""When each resource of each company is swept: soon after a known gap, rarely otherwise.

Why (issue 12, QUALITY P7): sweeping all 10 resources of every company every
``RECONCILE_INTERVAL_SECONDS`` (900 s) cost ~960 Intacct calls per idle company a day, for
changes that almost always arrived by webhook. A webhook is lost only when Intacct's four
attempts (0, 10, 40, 130 s) all fail, and nearly every such failure is one the service sees:

- the receiver answered 5xx/503 (``ingest.gaps.RECEIVER_5XX``, per connection),
- the receiver was down (a silence of every receiver's heartbeat longer than
  ``ingest.gaps.DOWN_AFTER``, recorded by the first receiver back and by this scheduler),
- the broker was away (the receiver's publisher lost its connection).

So the ``budget`` schedule (the default) sweeps a resource when:

1. **keyset**: its key-set pass is due (every ``keyset_interval``, default 24 h);
2. **gap**: a gap that ended after the resource's last sweep began concerns its company, and
   ``interval / 3`` passed since that sweep. A lost change's webhook fails at least once after
   the change was committed, so a signal at or after the change exists (the receiver notes 5xx
   within 5 s, Intacct's first retry is 10 s later) and a sweep that *begins* after the signal
   sees the change: it is found within ``interval / 3 + tick`` plus the sweep's own run of the
   signal, inside ``RECONCILE_INTERVAL_SECONDS``;
3. **quiet**: ``quiet_interval`` (``RECONCILE_QUIET_INTERVAL_SECONDS``, default 3 h) passed
   since its last sweep: the documented bound for a loss nobody saw (Intacct dropping a
   webhook on its side, a network path that failed before reaching us).

Each sweep is one modified-since query from the resource's watermark minus the overlap (one
page when idle), so the query of a gap's sweep always covers the gap's window, Intacct's
retry span and the overlap: the watermark is where the previous sweep began. Tokens are
cached for their lifetime by the process's client (12 h at Intacct: two or three a day).
At defaults an idle company costs 10 resources x 8 sweeps a day (one of them the key-set
pass, one page per resource when small) + 2 tokens: 82 calls measured by bench/budget.py
(962 on the old schedule), against a budget of 250. The event queue door
(``ingest/event_queue.py``, on by default) adds one ``count`` per interval: 178 in all.

``fixed`` is the old schedule (every resource every ``interval``), for comparison and for an
operator who prefers latency to budget. A resource whose sweep failed waits ``interval``
before it is tried again, whatever its reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from config import Settings
from ingest.gaps import DOWN_AFTER, RECEIVER_DOWN, Gap, GapStore
from schemas.catalog import OBJECTS, SyncedObject
from workers.connections.store import ConnectionRecord
from workers.reconcile.store import Watermark, WatermarkStore

SCHEDULES = ("budget", "fixed")
_PRUNE_EVERY = timedelta(hours=1)


@dataclass(frozen=True)
class ScheduleOptions:
    """The schedule's tunables; :meth:`from_settings` reads the environment's ones."""

    mode: str = "budget"
    interval: timedelta = timedelta(seconds=900)
    quiet_interval: timedelta = timedelta(hours=3)
    keyset_interval: timedelta = timedelta(hours=24)
    down_after: timedelta = DOWN_AFTER
    gap_retention: timedelta = timedelta(days=7)

    def __post_init__(self) -> None:
        if self.mode not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.mode!r}")

    @classmethod
    def from_settings(
        cls, settings: Settings, *, keyset_interval: timedelta | None = None
    ) -> ScheduleOptions:
        return cls(
            mode=settings.reconcile_schedule,
            interval=timedelta(seconds=settings.reconcile_interval_seconds),
            quiet_interval=timedelta(seconds=settings.reconcile_quiet_interval_seconds),
            keyset_interval=keyset_interval or cls.keyset_interval,
        )

    @property
    def gap_spacing(self) -> timedelta:
        """The least time between two sweeps of a resource for gaps: an outage costs a few sweeps."""
        return self.interval / 3

    @property
    def tick(self) -> float:
        """Seconds between two looks at what is due (reads of our own database, no Intacct call)."""
        return min(60.0, self.interval.total_seconds() / 15)


@dataclass(frozen=True)
class Due:
    """One resource to sweep now, and why (``gap``, ``quiet``, ``keyset`` or ``fixed``)."""

    connection: ConnectionRecord
    synced: SyncedObject
    reason: str


@dataclass
class Schedule:
    """Decides what is due at ``now`` from the watermarks and the gaps; holds no Intacct client."""

    options: ScheduleOptions
    watermarks: WatermarkStore
    gaps: GapStore | None = None
    objects: Sequence[SyncedObject] = OBJECTS
    _failed: dict[tuple[str, str], datetime] = field(default_factory=dict)
    _pruned_at: datetime | None = None

    def due(self, connections: Sequence[ConnectionRecord], now: datetime) -> list[Due]:
        """What to sweep at ``now``: key-set passes first, then gaps, then quiet sweeps."""
        self._watch_receivers(now)
        marks = self.watermarks.all()
        known = self._gaps(connections, marks)
        found: list[Due] = []
        for connection in connections:
            mine = [g for g in known if g.connection_id in (None, connection.connection_id)]
            for synced in self.objects:
                mark = marks.get((connection.connection_id, synced.resource))
                reason = self._reason(connection, synced, mark, mine, now)
                if reason is not None:
                    found.append(Due(connection, synced, reason))
        order = {"keyset": 0, "gap": 1, "fixed": 2, "quiet": 3}
        return sorted(found, key=lambda due: order[due.reason])

    def settle(self, connection_id: str, resource: str, kind: str, now: datetime) -> None:
        """Note a sweep's outcome: a failed one waits ``interval`` before its next try."""
        if kind == "failed":
            self._failed[(connection_id, resource)] = now
        else:
            self._failed.pop((connection_id, resource), None)

    def _reason(
        self,
        connection: ConnectionRecord,
        synced: SyncedObject,
        mark: Watermark | None,
        gaps: list[Gap],
        now: datetime,
    ) -> str | None:
        options = self.options
        failed_at = self._failed.get((connection.connection_id, synced.resource))
        if failed_at is not None and now - failed_at < options.interval:
            return None
        last = (mark.modified_since if mark else None) or connection.created_at
        keyset_last = (mark.keyset_checked_at if mark else None) or connection.created_at
        if now - keyset_last >= options.keyset_interval:
            return "keyset"
        if options.mode == "fixed":
            return "fixed" if now - last >= options.interval else None
        if now - last >= options.quiet_interval:
            return "quiet"
        if now - last >= options.gap_spacing and any(gap.ended_at >= last for gap in gaps):
            return "gap"
        return None

    def _gaps(
        self, connections: Sequence[ConnectionRecord], marks: dict[tuple[str, str], Watermark]
    ) -> list[Gap]:
        if self.gaps is None or self.options.mode == "fixed" or not connections:
            return []
        starts = [connection.created_at for connection in connections]
        starts += [mark.modified_since for mark in marks.values() if mark.modified_since is not None]
        return self.gaps.since(min(starts), [connection.connection_id for connection in connections])

    def _watch_receivers(self, now: datetime) -> None:
        """A silence of every receiver while this process runs is a gap, recorded as it lasts."""
        if self.gaps is None or self.options.mode == "fixed":
            return
        newest = self.gaps.newest_beat()
        if newest is not None and now - newest > self.options.down_after:
            self.gaps.record(RECEIVER_DOWN, None, newest, now)
        if self._pruned_at is None or now - self._pruned_at >= _PRUNE_EVERY:
            self.gaps.prune(now - self.options.gap_retention)
            self._pruned_at = now
