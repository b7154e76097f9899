"""The ``console`` process: the operations console under gunicorn, one worker with its threads."""

from __future__ import annotations

from config import Settings
from console.audit import AuditLog
from console.jobs import Jobs
from console.parts import ConsoleParts
from console.sampler import QueueSampler
from processes.parts import ProcessParts
from workers.deadletters.store import DeadLetterStore


def build(settings: Settings, *, sample_every: float = 10.0) -> ConsoleParts:
    """The database (migrated), the audit trail, jobs and the queue sampler of one console."""
    parts = ProcessParts(settings, process="console")
    try:
        audit = AuditLog(parts.engine)
        return ConsoleParts(
            settings=settings,
            engine=parts.engine,
            dead=DeadLetterStore(parts.engine),
            audit=audit,
            jobs=Jobs(audit),
            sampler=QueueSampler(settings.amqp_url, parts.topology, every=sample_every),
            closer=parts.close,
        )
    except BaseException:
        parts.close()
        raise


def run(settings: Settings, *, threads: int = 8) -> None:
    """Serve the console on $PORT until SIGTERM/SIGINT."""
    from console.server import serve

    serve(settings, threads=threads)
