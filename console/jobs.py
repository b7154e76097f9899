"""Background jobs of the console (replays, purges, sweeps) with live progress and exact accounting.

A job runs in a thread of the console process; its progress is kept in memory for the page
that polls it, and its start and outcome go to the audit trail, so a job cut short by a restart
is still on record as started.
"""

from __future__ import annotations

import collections
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from console.audit import AuditLog

log = structlog.get_logger(__name__)


@dataclass
class Job:
    """One background action; the counters are what the progress page shows."""

    id: int
    kind: str
    title: str
    selection: str
    actor: str
    started_at: datetime
    state: str = "running"  # running, done, failed
    total: int | None = None
    done: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    outcome: str = ""
    finished_at: datetime | None = None
    audit_id: int | None = None

    @property
    def percent(self) -> int:
        if self.state != "running":
            return 100
        if not self.total:
            return 0
        return min(100, round(100 * self.done / self.total))


Work = Callable[[Job], str]


class Jobs:
    """The jobs of this process, newest first; each one audited when it starts and when it ends."""

    def __init__(self, audit: AuditLog, *, keep: int = 100) -> None:
        self._audit = audit
        self._jobs: collections.OrderedDict[int, Job] = collections.OrderedDict()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._keep = keep

    def start(self, kind: str, title: str, selection: str, actor: str, work: Work) -> Job:
        job = Job(next(self._ids), kind, title, selection, actor, datetime.now(UTC))
        job.audit_id = self._audit.record(actor, kind, selection, f"started (job {job.id})")
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > self._keep:
                self._jobs.popitem(last=False)
        threading.Thread(
            target=self._run, args=(job, work), name=f"console-job-{job.id}", daemon=True
        ).start()
        return job

    def get(self, job_id: int) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def recent(self) -> list[Job]:
        with self._lock:
            return list(reversed(self._jobs.values()))

    def _run(self, job: Job, work: Work) -> None:
        try:
            job.outcome = work(job)
            job.state = "done"
        except Exception as exc:  # the outcome of a failed job is its error, on the page and in the audit
            job.outcome = f"failed: {exc}"
            job.state = "failed"
            log.warning("console_job_failed", job=job.id, kind=job.kind, error=str(exc))
        job.finished_at = datetime.now(UTC)
        if job.audit_id is not None:
            self._audit.finish(job.audit_id, job.outcome)
