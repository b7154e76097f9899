"""The ``writeback`` process: the payment-message consumer, until SIGTERM."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kombu import Connection
from sqlalchemy import Engine

from broker.topology import WRITEBACK_QUEUE_NAME, build_topology
from broker.urls import kombu_url
from clients.flexpoint import FlexPointClient
from clients.intacct.client import IntacctClient, create_client
from clients.intacct.payments import PaymentWrites
from config import Settings
from observability.logging import get_logger
from observability.metrics import WritebackMetrics
from reliability.breaker import Breakers
from store.breakers import BreakerStore
from store.connections import ConnectionStore
from store.crypto import SecretBox
from store.db import create_engine_for, upgrade
from store.postings import PostingStore
from store.slots import company_slots
from workers.failures import RetryPolicy
from workers.runtime.process import require_settings as require_worker_settings
from workers.runtime.process import run_worker
from workers.writeback.consumer import WritebackConsumer
from workers.writeback.handler import WritebackHandler

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


def require_settings(settings: Settings) -> None:
    """Stop with one line naming any setting the writeback process cannot run without."""
    require_worker_settings(settings, "writeback")


@dataclass
class Parts:
    """What the process is made of, so tests and ``run`` wire it the same way."""

    engine: Engine
    postings: PostingStore
    intacct: IntacctClient
    flexpoint: FlexPointClient
    consumer: WritebackConsumer
    metrics: WritebackMetrics

    def close(self) -> None:
        self.consumer.close()
        self.intacct.close()
        self.flexpoint.close()
        self.engine.dispose()


def build(settings: Settings, *, timing: Timing | None = None, **options: Any) -> Parts:
    """The consumer with the real store and clients; ``options`` go to the consumer."""
    require_settings(settings)
    timing = timing or Timing()
    engine = create_engine_for(settings.database_url)
    upgrade(engine)
    metrics = WritebackMetrics()
    connections = ConnectionStore(engine, SecretBox.for_settings(settings))
    breakers = Breakers.for_settings(settings, BreakerStore(engine))
    intacct = create_client(
        settings,
        company_slots(settings, engine, lease_seconds=sum(timing.timeouts) + 2.0),
        timeouts=timing.timeouts,
        slot_timeout=timing.slot_timeout,
        guard=breakers,
    )
    flexpoint = FlexPointClient.from_settings(settings, process="writeback", guard=breakers)
    postings = PostingStore(engine)
    handler = WritebackHandler(
        connections=connections,
        postings=postings,
        intacct=PaymentWrites(intacct),
        flexpoint=flexpoint,
        write_span=timing.write_span,
        metrics=metrics,
    )
    connection = Connection(
        kombu_url(settings.amqp_url),
        transport_options={"confirm_publish": True},
        heartbeat=30,
        failover_strategy="round-robin",
    )
    queue = build_topology(settings.archive_max_age, settings.flexsync_retry_delays).queue(
        WRITEBACK_QUEUE_NAME
    )
    options.setdefault("retry", RetryPolicy.from_settings(settings))
    consumer = WritebackConsumer(connection, queue, handler, **options)
    return Parts(engine, postings, intacct, flexpoint, consumer, metrics)


def run(
    settings: Settings, *, timing: Timing | None = None, metrics_port: int | None = None, workers: int = 4
) -> None:
    """Consume payment messages until SIGTERM/SIGINT; the messages in hand finish and are settled."""
    parts = build(settings, timing=timing, workers=workers)
    port = settings.port if metrics_port is None else metrics_port
    try:
        run_worker("writeback", parts.consumer, registry=parts.metrics.registry if port else None, port=port)
    finally:
        parts.close()
