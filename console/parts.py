"""What the console holds while it runs: the database, the audit trail, jobs, and its one thread.

The thread is the queue sampler behind the overview's charts. Dead letters are stored by the
``provisioning`` process (workers/deadletters/storer.py on the worker runtime), not here: the
console only reads the table, and stores what waits in the queue before a replay or purge.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlalchemy import Engine

from broker.topology import build_topology
from config import Settings
from console.audit import AuditLog
from console.jobs import Jobs
from console.sampler import QueueSampler
from store.db import create_engine_for, upgrade
from workers.deadletters.store import DeadLetterStore


@dataclass
class ConsoleParts:
    settings: Settings
    engine: Engine
    dead: DeadLetterStore
    audit: AuditLog
    jobs: Jobs
    sampler: QueueSampler
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start_background(self) -> None:
        """Start sampling queues (idempotent)."""
        if self.threads:
            return
        thread = threading.Thread(
            target=self.sampler.run, args=(self.stop,), name="queue-sampler", daemon=True
        )
        thread.start()
        self.threads.append(thread)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)
        self.engine.dispose()


def build_parts(settings: Settings, *, sample_every: float = 10.0) -> ConsoleParts:
    engine = create_engine_for(settings.database_url)
    upgrade(engine)
    audit = AuditLog(engine)
    return ConsoleParts(
        settings=settings,
        engine=engine,
        dead=DeadLetterStore(engine),
        audit=audit,
        jobs=Jobs(audit),
        sampler=QueueSampler(
            settings.amqp_url,
            build_topology(settings.archive_max_age, settings.flexsync_retry_delays),
            every=sample_every,
        ),
    )
