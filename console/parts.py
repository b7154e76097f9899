"""What the console holds while it runs (built by ``processes/console.py``): the database, the audit trail, jobs, and its two threads.

The threads are the storing consumer of ``dead-letter`` (workers/deadletters/storer.py: the console is the
process that is up whenever someone looks at dead letters, and the CLI drains the queue itself
when it is not) and the queue sampler behind the overview's charts.
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
from workers.deadletters.storer import StoringConsumer


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
        """Start storing dead letters and sampling queues (idempotent)."""
        if self.threads:
            return
        storer = StoringConsumer(self.settings.amqp_url, self.dead)
        for name, target in (("dead-letter-storer", storer.run), ("queue-sampler", self.sampler.run)):
            thread = threading.Thread(target=target, args=(self.stop,), name=name, daemon=True)
            thread.start()
            self.threads.append(thread)

    # Closes what the process opened (the engine); built by ``processes.console.build``.
    closer: Callable[[], None] = lambda: None

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)
        self.closer()
