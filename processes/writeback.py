"""The ``writeback`` process: the payment-message consumer, until SIGTERM."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from broker.topology import WRITEBACK_QUEUE_NAME
from clients.flexpoint import FlexPointClient
from clients.intacct.client import IntacctClient
from clients.intacct.payments import PaymentWrites
from config import Settings
from observability.logging import get_logger
from observability.metrics import WritebackMetrics
from processes.parts import ProcessParts, wait_for_database
from workers.runtime.failures import RetrySchedule
from workers.runtime.messages import QueueConsumer
from workers.runtime.process import require_settings as require_worker_settings
from workers.runtime.process import run_worker
from workers.writeback.handler import WritebackHandler
from workers.writeback.store import PostingStore

log = get_logger(__name__)


@dataclass(frozen=True)
class Timing:
    """How long one Intacct call may take: the read timeout, the wait for a company slot."""

    request_timeout: float = 30.0
    slot_timeout: float = 30.0

    @property
    def timeouts(self) -> tuple[float, float]:
        return (min(5.0, self.request_timeout), self.request_timeout)

    @property
    def write_span(self) -> float:
        """The longest a create may take from its intent to its end: a token, a slot, the request."""
        return self.slot_timeout + 2 * sum(self.timeouts) + 2.0


def connection_of(body: Any) -> str | None:
    """A payment message's connection (its Intacct company's cap is what its postings wait for)."""
    connection = body.get("connectionId") if isinstance(body, dict) else None
    return connection if isinstance(connection, str) else None


def require_settings(settings: Settings) -> None:
    """Stop with one line naming any setting the writeback process cannot run without."""
    require_worker_settings(settings, "writeback")


@dataclass
class Writeback:
    """What the process is made of, so tests and ``run`` wire it the same way.

    A payment that can still be posted is never dead-lettered for a transient failure: like every
    worker's, it keeps coming back through the longest delay for as long as the retry window
    lasts (``workers.runtime.failures``).
    """

    parts: ProcessParts
    postings: PostingStore
    intacct: IntacctClient
    flexpoint: FlexPointClient
    consumer: QueueConsumer
    metrics: WritebackMetrics

    @property
    def engine(self) -> Engine:
        return self.parts.engine

    def close(self) -> None:
        """The consumer, the broker connection, the clients, then the engine."""
        self.parts.close()


def build(settings: Settings, *, timing: Timing | None = None, **options: Any) -> Writeback:
    """The consumer with the real store and clients; ``options`` go to the consumer."""
    require_settings(settings)
    timing = timing or Timing()
    # One kept-alive connection per worker thread to each peer and to the database: a pool
    # smaller than the threads opens (and drops) a new connection for every use beyond it.
    threads = int(options.get("workers", 4)) + 2
    pool_size = max(16, threads)
    parts = ProcessParts(settings, process="writeback", pool_size=threads)
    try:
        metrics = parts.metrics(WritebackMetrics)
        # A slot's lease covers a request (its timeouts) with the client's margin (1 s), the age a
        # slot handed from the payment before may have (``handoff_seconds``, 1 s), and the read
        # before the create: both calls of a posting go out under the one slot.
        slots = parts.slots(lease_seconds=sum(timing.timeouts) + 4.0)
        intacct = parts.intacct(
            slots=slots,
            timeouts=timing.timeouts,
            slot_timeout=timing.slot_timeout,
            guard=parts.breakers,
            pool_size=pool_size,
        )
        flexpoint = parts.flexpoint(guard=parts.breakers, pool_size=pool_size)
        postings = PostingStore(parts.engine)
        handler = WritebackHandler(
            # The write-back checks no webhook signature: the connection is read, its secret left sealed.
            connections=parts.connections.without_secrets(),
            postings=postings,
            intacct=PaymentWrites(intacct),
            flexpoint=flexpoint,
            write_span=timing.write_span,
            metrics=metrics,
        )
        options.setdefault("retry", RetrySchedule.from_settings(settings))
        options.setdefault("poll_interval", 0.05)
        # This process's share of each company's cap (the cap divided among the writeback processes
        # consuming the queue) is what it may hold of the company's Intacct slots, and one payment
        # more than the share runs, waiting in this process for the slot the one before gives
        # back. The rest wait in hand without a thread, so a deeper prefetch gives the threads
        # other companies' payments.
        options.setdefault("key", connection_of)
        options.setdefault("per_key", settings.intacct_max_concurrency_per_company)
        options.setdefault("share_keys", True)
        options.setdefault("spare", 1)
        options.setdefault("on_share", slots.share)
        # What another process leaves of a company's slots is lent to this one (the end of a batch,
        # when the company's payments are left in one process): one payment more runs per slot lent.
        options.setdefault("borrowed", lambda key: slots.beyond_share(handler.company_of(key)))
        options.setdefault("prefetch", 4 * int(options.get("workers", 4)))
        consumer = QueueConsumer(
            parts.amqp_connection(),
            parts.topology.queue(WRITEBACK_QUEUE_NAME),
            handler,
            name="writeback",
            **options,
        )
        slots.on_borrow = consumer.poke
        parts.adopt("consumer", consumer)
    except BaseException:
        parts.close()
        raise
    return Writeback(parts, postings, intacct, flexpoint, consumer, metrics)


def run(
    settings: Settings, *, timing: Timing | None = None, metrics_port: int | None = None, workers: int = 4
) -> None:
    """Consume payment messages until SIGTERM/SIGINT; the messages in hand finish and are settled."""
    if not wait_for_database(settings, "writeback"):
        return
    writeback = build(settings, timing=timing, workers=workers)
    port = settings.port if metrics_port is None else metrics_port
    try:
        run_worker(
            "writeback",
            writeback.consumer,
            registry=writeback.metrics.registry if port else None,
            port=port,
            bind=settings.flexsync_metrics_bind,
            token=settings.flexsync_metrics_token,
        )
    finally:
        writeback.close()
