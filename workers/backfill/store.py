"""Backfill runs and their checkpoints: what is scheduled, who runs it (a lease), how far it came.

A run is leased through ``store.leases`` like an Intacct slot: taking it is a compare-and-set
``UPDATE`` whose ``WHERE`` is the "is it free?" check, so two workers never run one import at
once, and a holder killed mid-run is replaced once its lease runs out (at once on its node). Every checkpoint write
checks the lease in the same transaction, so a holder that lost its run cannot move it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Connection, Engine, Table, and_, delete, func, or_, select, update

from reliability.errors import FlexsyncError
from store.db import conflict_insert, write_transaction
from store.leases import LeaseColumns
from store.models import BackfillCheckpoint, BackfillRun

# SQLAlchemy types __table__ as a FromClause; a declarative model's is always a Table.
_runs = cast(Table, BackfillRun.__table__)
_r = _runs.c
_points = cast(Table, BackfillCheckpoint.__table__)
_p = _points.c
LIVE_STATES = ("pending", "running")


class RunBusy(FlexsyncError, RuntimeError):
    """Another live holder runs this backfill now."""

    reason = "backfill_running_elsewhere"


@dataclass(frozen=True)
class RunState:
    """A run as stored."""

    connection_id: str
    state: str
    holder: str | None
    leased_until: float | None
    attempts: int
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    resume_at: float | None = None  # unix seconds: a failed run resumes by itself then
    resumes: int = 0  # automatic resumptions since the run was last requested


@dataclass(frozen=True)
class Checkpoint:
    """Every record of ``resource`` up to ``after_key`` (key order) is confirmed by FlexPoint."""

    resource: str
    after_key: str | None = None
    imported: int = 0
    skipped: int = 0
    unmappable: int = 0
    total: int | None = None
    done: bool = False


def _utcnow() -> datetime:
    return datetime.now(UTC)


class BackfillStore:
    """Runs (one per connection), their leases and their per-resource checkpoints."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], float] = time.time,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._now = now
        self._insert = conflict_insert(engine)
        self._leases = LeaseColumns(_runs, clock=clock)

    # -- scheduling -------------------------------------------------------------------------

    def request(self, connection_id: str, *, restart: bool = False, if_unfinished: bool = False) -> None:
        """Schedule the connection's import; a pending or running one is kept as it is.

        A finished run is scheduled again: a completed one from scratch (a re-import), a failed
        or cancelled one from its checkpoints. ``if_unfinished`` leaves a completed run alone (a
        replayed connect or a credential rotation must not re-read the whole history).
        ``restart`` always starts from scratch, and takes the run from a current holder (which
        stops at its next page).
        """
        now = self._now()
        with write_transaction(self._engine) as conn:
            row = conn.execute(select(_r.state).where(_r.connection_id == connection_id)).first()
            if row is None:
                conn.execute(
                    _runs.insert().values(
                        connection_id=connection_id,
                        state="pending",
                        started_at=now,
                        updated_at=now,
                        attempts=0,
                        resumes=0,
                    )
                )
                conn.execute(delete(_points).where(_p.connection_id == connection_id))
                return
            if row.state in LIVE_STATES and not restart:
                return
            if row.state == "completed" and if_unfinished and not restart:
                return
            if restart or row.state == "completed":
                conn.execute(delete(_points).where(_p.connection_id == connection_id))
            conn.execute(
                update(_runs)
                .where(_r.connection_id == connection_id)
                .values(
                    state="pending",
                    **self._leases.unheld(),
                    attempts=0,
                    error=None,
                    started_at=now,
                    updated_at=now,
                    finished_at=None,
                    resume_at=None,
                    resumes=0,
                )
            )

    def cancel(self, connection_id: str) -> bool:
        """Cancel a pending or running import (its holder stops at the next page), or a failed one
        waiting to resume by itself; False if none."""
        waiting = and_(_r.state == "failed", _r.resume_at.is_not(None))
        with write_transaction(self._engine) as conn:
            changed = conn.execute(
                update(_runs)
                .where(_r.connection_id == connection_id, or_(_r.state.in_(LIVE_STATES), waiting))
                .values(state="cancelled", **self._leases.unheld(), resume_at=None, updated_at=self._now())
            ).rowcount
        return changed == 1

    def get(self, connection_id: str) -> RunState | None:
        """The connection's run, or None when none was ever requested."""
        with self._engine.connect() as conn:
            row = conn.execute(select(_runs).where(_r.connection_id == connection_id)).first()
        return None if row is None else _run(row)

    # -- leases -----------------------------------------------------------------------------

    def claim_next(self, holder: str, lease_seconds: float) -> str | None:
        """Take a pending run, a running one whose holder's lease ran out, or a failed one whose
        time to resume has come; its connection id."""
        now = self._clock()
        with self._engine.connect() as conn:
            # A run whose holder died on this node is taken at once, not when its lease runs out.
            dead = self._leases.dead_holders(conn, {"state": "running"})
            candidates = list(
                conn.execute(
                    select(_r.connection_id)
                    .where(self._claimable(now, dead))
                    .order_by(_r.updated_at, _r.connection_id)
                    .limit(20)
                ).scalars()
            )
        for connection_id in candidates:
            if self._take(connection_id, holder, lease_seconds, self._claimable(now, dead)):
                return connection_id
        return None

    def claim(
        self, connection_id: str, holder: str, lease_seconds: float, *, replacing: str | None = None
    ) -> None:
        """Take this connection's run whatever its state, unless another holder's lease is live.

        For the foreground command: a failed, cancelled or completed run is taken as it is (call
        :meth:`request` first to schedule a re-import). ``replacing`` names a holder known to be
        dead whose live lease may be taken. Raises :class:`RunBusy` or LookupError.
        """
        with self._engine.connect() as conn:
            lease_free = self._leases.free_now(
                conn, {"connection_id": connection_id}, also=[holder, replacing or holder]
            )
        free = or_(_r.state != "running", lease_free)
        if self._take(connection_id, holder, lease_seconds, free):
            return
        run = self.get(connection_id)
        if run is None:
            raise LookupError(f"no backfill was requested for connection {connection_id}")
        raise RunBusy(
            f"the backfill of connection {connection_id} is running in another process ({run.holder})"
        )

    def renew(self, connection_id: str, holder: str, lease_seconds: float) -> bool:
        """Extend the lease; False when the run is no longer ours (cancelled, restarted, taken over)."""
        with write_transaction(self._engine) as conn:
            return self._renewed(conn, connection_id, holder, lease_seconds)

    def release(
        self,
        connection_id: str,
        holder: str,
        state: str,
        *,
        error: str | None = None,
        failed: bool = False,
        resume_in: float | None = None,
    ) -> bool:
        """Leave the run in ``state`` (pending: resumable by anyone; completed; failed) if still ours.

        A failed run given ``resume_in`` (seconds) is taken up again by the next worker that looks
        after that time, from its checkpoints; that counts one more of its ``resumes``.
        """
        now = self._now()
        values: dict = {"state": state, "updated_at": now}
        if state in ("completed", "failed"):
            values["finished_at"] = now
            values["error"] = error
        if failed:
            values["attempts"] = _r.attempts + 1
        if state == "completed":
            values["resumes"] = 0
        if state == "failed" and resume_in is not None:
            values["resume_at"] = self._clock() + resume_in
            values["resumes"] = _r.resumes + 1
        with write_transaction(self._engine) as conn:
            return self._leases.release(
                conn, {"connection_id": connection_id}, holder, values=values, where=_running
            )

    def note_error(self, connection_id: str, holder: str, error: str) -> None:
        """Record a transient failure the holder is about to retry (shown while it waits)."""
        values = {"error": error, "attempts": _r.attempts + 1, "updated_at": self._now()}
        with write_transaction(self._engine) as conn:
            self._leases.write(conn, {"connection_id": connection_id}, holder, values, where=_running)

    # -- checkpoints ------------------------------------------------------------------------

    def checkpoints(self, connection_id: str) -> dict[str, Checkpoint]:
        """The saved checkpoints of the connection, by resource."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(_points).where(_p.connection_id == connection_id)).all()
        return {
            row.resource: Checkpoint(
                row.resource,
                row.after_key,
                row.imported,
                row.skipped,
                row.unmappable,
                row.total,
                bool(row.done),
            )
            for row in rows
        }

    def save(self, connection_id: str, holder: str, point: Checkpoint, lease_seconds: float) -> bool:
        """Save a checkpoint and renew the lease in one transaction; False (nothing saved) if not ours."""
        values = {
            "connection_id": connection_id,
            "resource": point.resource,
            "after_key": point.after_key,
            "imported": point.imported,
            "skipped": point.skipped,
            "unmappable": point.unmappable,
            "total": point.total,
            "done": point.done,
            "updated_at": self._now(),
        }
        statement = self._insert(_points).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=[_p.connection_id, _p.resource],
            set_={k: statement.excluded[k] for k in values if k not in ("connection_id", "resource")},
        )
        with write_transaction(self._engine) as conn:
            if not self._renewed(conn, connection_id, holder, lease_seconds):
                return False
            conn.execute(statement)
        return True

    # -- internals --------------------------------------------------------------------------

    def _claimable(self, now: float, dead: list[str]):
        abandoned = and_(_r.state == "running", self._leases.free(now, dead))
        due = and_(_r.state == "failed", _r.resume_at <= now)
        return or_(_r.state == "pending", abandoned, due)

    def _take(self, connection_id: str, holder: str, lease_seconds: float, free) -> bool:
        started = {"state": "running", "updated_at": self._now(), "finished_at": None, "resume_at": None}
        with write_transaction(self._engine) as conn:
            return self._leases.claim(
                conn, {"connection_id": connection_id}, holder, lease_seconds, free=free, values=started
            )

    def _renewed(self, conn: Connection, connection_id: str, holder: str, lease_seconds: float) -> bool:
        return self._leases.renew(
            conn, {"connection_id": connection_id}, holder, lease_seconds, where=_running
        )

    def progress_by_connection(self) -> dict[str, tuple[str, int, float | None]]:
        """Per connection with a run: its state, the records imported so far, and when a failed
        run resumes."""
        imported = (
            select(BackfillCheckpoint.connection_id, func.sum(BackfillCheckpoint.imported).label("done"))
            .group_by(BackfillCheckpoint.connection_id)
            .subquery()
        )
        query = select(
            BackfillRun.connection_id, BackfillRun.state, imported.c.done, BackfillRun.resume_at
        ).outerjoin(imported, imported.c.connection_id == BackfillRun.connection_id)
        with self._engine.connect() as conn:
            return {
                cid: (state, int(done or 0), resume_at)
                for cid, state, done, resume_at in conn.execute(query).all()
            }


# A lease write touches a run only while it runs: a cancelled or finished run is nobody's.
_running = (_r.state == "running",)


def _run(row) -> RunState:
    # The dataclass's fields are columns of the row, by name.
    return RunState(**{field.name: row._mapping[field.name] for field in fields(RunState)})
