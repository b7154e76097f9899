"""Running one claimed backfill to its end: every resource in order, retries, the final state.

Transient failures (Intacct or FlexPoint unavailable, rate limited, a database hiccup) are
retried from the last checkpoint with jittered exponential backoff; ``max_attempts`` failures
in a row without progress, or one permanent failure, mark the run failed with the reason.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from observability.logging import get_logger
from reliability.backoff import Backoff
from reliability.errors import Transient
from workers.backfill.importer import DEFAULT_PAGE_SIZE, LeaseLost, ResourceImporter
from workers.backfill.lease import heartbeat
from workers.backfill.plan import resources
from workers.backfill.progress import StatusReporter
from workers.backfill.store import BackfillStore, Checkpoint

log = get_logger(__name__)

OnProgress = Callable[[str, Checkpoint], None]


@dataclass(frozen=True)
class RunOptions:
    """Tunables of a run; the defaults reach QUALITY P4 with Intacct's cap of 2."""

    page_size: int = DEFAULT_PAGE_SIZE
    pipeline: int = 3
    lease_seconds: float = 30.0
    max_attempts: int = 5
    backoff_base: float = 1.0
    backoff_cap: float = 30.0
    report_interval: float = 2.0
    # After a run gives up on a transient error (Intacct or FlexPoint down for longer than the
    # retries above), it resumes by itself after each of these delays in turn; then it stays failed.
    resume_delays: tuple[float, ...] = (60.0, 300.0, 900.0, 3600.0, 3600.0, 3600.0)


@dataclass(frozen=True)
class _Ending:
    """Why a run ends before its last resource: ``kind`` is lost, stopped, failed or transient."""

    kind: str
    reason: str | None = None


_LOST, _STOPPED = _Ending("lost"), _Ending("stopped")


class BackfillRunner:
    """Runs claimed backfills with the clients it is given; one runner serves many runs."""

    def __init__(
        self,
        settings: Any,
        store: BackfillStore,
        *,
        intacct: Any,
        flexpoint: Any,
        connections: Any,
        options: RunOptions | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._intacct = intacct
        self._flexpoint = flexpoint
        self._connections = connections
        self._options = options or RunOptions()
        self._rng = rng or random.Random()

    def run(
        self, connection_id: str, holder: str, stop: threading.Event, on_progress: OnProgress | None = None
    ) -> str:
        """Run the claimed backfill; its outcome: completed, failed, cancelled, stopped or lost."""
        opts = self._options
        connection = self._connections.get(connection_id)
        if connection is None or not connection.is_active:
            self._store.release(connection_id, holder, "cancelled", error="connection disconnected")
            return "cancelled"
        names = [obj.resource for obj in resources()]
        points = {name: Checkpoint(name) for name in names} | self._store.checkpoints(connection_id)
        reporter = StatusReporter(
            self._flexpoint,
            connection,
            names,
            webhook_url=self._webhook_url(connection_id),
            interval=opts.report_interval,
            live=lambda: _still_connected(self._connections, connection_id),
        )
        log.info("backfill_started", connection_id=connection_id, holder=holder)
        with (
            heartbeat(self._store, self._connections, connection_id, holder, opts.lease_seconds) as beat,
            ThreadPoolExecutor(opts.pipeline, thread_name_prefix=f"backfill-{connection_id[:8]}") as pool,
        ):
            importer = ResourceImporter(
                self._intacct, self._flexpoint, pool, page_size=opts.page_size, pipeline=opts.pipeline
            )

            def should_stop() -> bool:
                return stop.is_set() or beat.lost.is_set()

            def save(point: Checkpoint) -> bool:
                saved = self._store.save(connection_id, holder, point, opts.lease_seconds)
                if saved:
                    points[point.resource] = point
                    if on_progress is not None:
                        on_progress(point.resource, point)
                    reporter.update(points)
                return saved

            for name in names:
                if points[name].done:
                    continue
                outcome = self._resource(connection, holder, points, name, importer, save, should_stop)
                if outcome is not None:
                    return self._ended(connection_id, holder, outcome, beat, reporter, points)
            self._store.release(connection_id, holder, "completed")
            reporter.update(points, final=True)
        log.info("backfill_completed", connection_id=connection_id, **_totals(points))
        return "completed"

    def _resource(self, connection, holder, points, name, importer, save, should_stop) -> _Ending | None:
        """Import one resource with retries: None when it is done, else why the run ends."""
        failures = 0
        while True:
            before = points[name]
            try:
                point = importer.run(connection, before, save=save, should_stop=should_stop)
            except LeaseLost:
                return _LOST
            except Exception as exc:
                failures = 0 if points[name].imported > before.imported else failures
                failures += 1
                reason = f"{name}: {type(exc).__name__}: {str(exc)[:300]}"
                # A database hiccup heals like a peer's outage: retried from the checkpoint.
                transient = isinstance(exc, (Transient, SQLAlchemyError))
                if not transient or failures >= self._options.max_attempts:
                    log.error(
                        "backfill_failed",
                        connection_id=connection.connection_id,
                        reason=reason,
                        transient=transient,
                    )
                    return _Ending("transient" if transient else "failed", reason)
                backoff = Backoff(self._options.backoff_base, self._options.backoff_cap)
                # Counted from the second step: the first retry already waits up to twice the base.
                delay = backoff.delay(failures + 1, self._rng)
                log.warning(
                    "backfill_retry",
                    connection_id=connection.connection_id,
                    reason=reason,
                    attempt=failures,
                    delay=round(delay, 2),
                )
                self._store.note_error(connection.connection_id, holder, reason)
                if _wait(should_stop, delay):
                    return _STOPPED
                continue
            if should_stop():
                return _STOPPED
            if point.done:
                return None

    def _ended(self, connection_id, holder, outcome: _Ending, beat, reporter, points) -> str:
        if beat.lost.is_set() or outcome.kind == "lost":
            # Disconnected: the run ends here. Cancelled or taken over: the row is no longer ours.
            self._store.release(connection_id, holder, "cancelled", error=beat.reason)
            log.info("backfill_cancelled", connection_id=connection_id, reason=beat.reason)
            return "cancelled"
        kind, reason = outcome.kind, outcome.reason
        if kind in ("failed", "transient"):
            resume_in = self._resume_in(connection_id) if kind == "transient" else None
            self._store.release(
                connection_id, holder, "failed", error=reason, failed=True, resume_in=resume_in
            )
            if resume_in is None:
                then = "it resumes where it stopped when run again"
            else:
                then = f"it resumes by itself in {_in_words(resume_in)}, where it stopped"
                log.info("backfill_resume_scheduled", connection_id=connection_id, resume_in=resume_in)
            reporter.update(points, final=True, message=f"The historical import stopped ({reason}); {then}.")
            return "failed"
        # Asked to stop (shutdown): left pending at its checkpoint for any worker to resume.
        self._store.release(connection_id, holder, "pending")
        reporter.update(points, final=True)
        log.info("backfill_paused", connection_id=connection_id, **_totals(points))
        return "stopped"

    def _resume_in(self, connection_id: str) -> float | None:
        """The delay before the next automatic resumption, or None when they are used up."""
        run = self._store.get(connection_id)
        resumes = run.resumes if run is not None else 0
        delays = self._options.resume_delays
        return delays[resumes] if resumes < len(delays) else None

    def _webhook_url(self, connection_id: str) -> str | None:
        base = getattr(self._settings, "public_base_url", None)
        return f"{base.rstrip('/')}/webhooks/intacct/{connection_id}" if base else None


def _still_connected(connections: Any, connection_id: str) -> bool:
    # Only "connected": a failed re-check or a disconnect is what the customer must keep seeing.
    record = connections.get(connection_id)
    return record is not None and record.state == "connected"


def _in_words(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} seconds"
    if seconds < 5400:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.0f} hours"


def _wait(should_stop: Callable[[], bool], seconds: float) -> bool:
    """Sleep up to ``seconds``, waking early (True) when the run must stop."""
    waiter = threading.Event()
    remaining = seconds
    while remaining > 0:
        if should_stop():
            return True
        waiter.wait(min(0.2, remaining))
        remaining -= 0.2
    return should_stop()


def _totals(points: dict[str, Checkpoint]) -> dict[str, int]:
    return {
        "read": sum(p.imported for p in points.values()),
        "skipped": sum(p.skipped for p in points.values()),
        "unmappable": sum(p.unmappable for p in points.values()),
    }
