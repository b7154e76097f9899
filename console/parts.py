"""What the console holds while it runs (built by ``processes/console.py``): the database, the audit trail, jobs, and its one thread.

The thread is the queue sampler behind the overview's charts. Dead letters are stored by the
``provisioning`` process (workers/deadletters/storer.py on the worker runtime), not here: the
console only reads the table, and stores what waits in the queue before a replay or purge.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from config import Settings
from console.audit import AuditLog
from console.jobs import Jobs
from console.sampler import QueueSampler
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

    # Closes what the process opened (the engine); built by ``processes.console.build``.
    closer: Callable[[], None] = lambda: None

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)
        self.closer()
