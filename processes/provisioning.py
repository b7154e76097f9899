"""The ``provisioning`` process: the connection-message consumer and the backfill worker, until SIGTERM."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from broker.topology import PROVISIONING_QUEUE_NAME
from clients.flexpoint import FlexPointClient
from clients.intacct import IntacctRetries
from config import Settings
from observability.logging import get_logger
from processes.parts import ProcessParts, wait_for_database
from workers.connections.changes import AnnouncingStore, ConnectionChanges
from workers.connections.handler import Backfills, ProvisioningHandler
from workers.connections.marks import ProvisioningMarks
from workers.connections.sealing import PasswordSeal
from workers.connections.store import ConnectionStore
from workers.runtime import process
from workers.runtime.failures import RetrySchedule
from workers.runtime.messages import QueueConsumer

log = get_logger(__name__)

# Connect and read timeouts (s) of the connect checks' Intacct calls: a stalled Intacct is
# reported to the admin after ~10 s rather than after the sync's 30 s read timeout, three times.
CHECK_TIMEOUTS = (5.0, 10.0)


class ScheduledBackfills:
    """The historical import as provisioning drives it: ``workers.backfill`` runs it."""

    def __init__(self, engine: Engine) -> None:
        from workers.backfill import cancel_backfill, request_backfill

        self._engine = engine
        self._request = request_backfill
        self._cancel = cancel_backfill

    def request(self, connection_id: str, *, restart: bool) -> None:
        # Without restart (a rotation, a replayed connect) an import that completed stays done.
        self._request(self._engine, connection_id, restart=restart, if_unfinished=not restart)

    def cancel(self, connection_id: str) -> None:
        self._cancel(self._engine, connection_id)


def require_settings(settings: Settings) -> None:
    """Stop with one line naming any setting the provisioning process cannot run without."""
    process.require_settings(settings, "provisioning", "PUBLIC_BASE_URL")


@dataclass
class Provisioning:
    """What the process is made of, so tests and ``run`` wire it the same way.

    The consumer takes one connection message at a time (``QueueConsumer``); a connect's password
    is sealed for a delay queue and removed for the dead-letter queue (``PasswordSeal``).
    """

    parts: ProcessParts
    store: ConnectionStore
    intacct: Any
    flexpoint: FlexPointClient
    consumer: QueueConsumer

    @property
    def engine(self) -> Engine:
        return self.parts.engine

    def close(self) -> None:
        """The consumer, the broker connection, the clients, then the engine."""
        self.parts.close()


def build(
    settings: Settings,
    *,
    backfills: Backfills | None = None,
    intacct: Any = None,
    unavailable_retries: int | None = None,
    **options: Any,
) -> Provisioning:
    """The consumer with the real store and clients; ``options`` go to the consumer."""
    require_settings(settings)
    parts = ProcessParts(settings, process="provisioning")
    try:
        store = parts.connections
        if intacct is None:
            # The admin waits on these checks: short timeouts and one try per call; the delay
            # queues retry, and the handler decides within two minutes (issue 30 #22).
            intacct = parts.intacct(
                guard=parts.breakers, timeouts=CHECK_TIMEOUTS, retry=IntacctRetries(unavailable_attempts=1)
            )
        else:
            parts.adopt("intacct client", intacct)
        flexpoint = parts.flexpoint(guard=parts.breakers)
        # Every receiver process evicts a connection from its cache once its change commits.
        changes = parts.adopt("change announcer", ConnectionChanges(settings.amqp_url))
        extra: dict[str, Any] = (
            {} if unavailable_retries is None else {"unavailable_retries": unavailable_retries}
        )
        handler = ProvisioningHandler(
            store=AnnouncingStore(store, changes),
            marks=ProvisioningMarks(parts.engine),
            intacct=intacct,
            flexpoint=flexpoint,
            backfills=backfills if backfills is not None else ScheduledBackfills(parts.engine),
            public_base_url=settings.public_base_url or "",
            **extra,
        )
        options.setdefault("retry", RetrySchedule.from_settings(settings))
        consumer = QueueConsumer(
            parts.amqp_connection(),
            parts.topology.queue(PROVISIONING_QUEUE_NAME),
            handler,
            name="provisioning",
            middleware=[PasswordSeal(parts.box)],
            **options,
        )
        parts.adopt("consumer", consumer)
    except BaseException:
        parts.close()
        raise
    return Provisioning(parts, store, intacct, flexpoint, consumer)


class ProvisioningProcess:
    """The consumer and the backfill worker, started, stopped and closed together."""

    def __init__(self, parts: Provisioning, backfill: Any) -> None:
        self._parts = parts
        self._backfill = backfill

    def run(self) -> None:
        self._backfill.start()
        self._parts.consumer.run()

    def stop(self) -> None:
        self._parts.consumer.stop()
        # The import pauses at its next page now, not after the consumer drained: a supervisor's
        # grace period before SIGKILL is often shorter than both together.
        self._backfill.request_stop()

    def close(self) -> None:
        try:
            self._backfill.stop(timeout=30.0)
        finally:
            self._parts.close()


def run(settings: Settings) -> None:
    """Consume connection messages, run scheduled backfills and store dead letters until SIGTERM/SIGINT.

    On a signal all stop taking work; the message in hand finishes and is settled, the backfill
    stops at its next checkpoint, the batch of dead letters in hand is stored and acknowledged.
    The dead-letter storer is a part of this process (one per deployment is enough, several are
    harmless): a small worker on the runtime, on a thread of its own.
    """
    from workers.backfill import BackfillWorker
    from workers.deadletters.store import DeadLetterStore
    from workers.deadletters.storer import StoringConsumer

    if not wait_for_database(settings, "provisioning"):
        return
    parts = build(settings)
    backfill = BackfillWorker(
        settings,
        parts.engine,
        intacct=parts.intacct,
        flexpoint=parts.flexpoint,
        connections=parts.store,
    )
    letters = DeadLetterStore(parts.engine)
    # Letters stored before the storer removed connect passwords: none is kept in clear.
    if stripped := letters.strip_passwords():
        log.info("dead_letter_passwords_removed", letters=stripped)
    storer = StoringConsumer.for_url(settings.amqp_url, letters)
    process.run_worker(
        "provisioning", process.Together(ProvisioningProcess(parts, backfill), dead_letter_storer=storer)
    )
