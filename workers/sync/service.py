"""The ``sync`` process: wires the store, the clients and the consumer, runs until SIGTERM."""

from __future__ import annotations

import signal
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from kombu import Connection
from prometheus_client import start_http_server

from broker.topology import build_topology
from clients.flexpoint import FlexPointClient
from clients.intacct.client import create_client
from config import Settings
from observability.logging import get_logger
from observability.metrics import SyncMetrics
from store.connections import CachedConnectionLookup, ConnectionStore
from store.crypto import SecretBox
from store.db import create_engine_for, upgrade
from workers.sync.consumer import SyncConsumer
from workers.sync.groups import Group
from workers.sync.handler import Outcome, SyncHandler

log = get_logger(__name__)


def build_consumer(settings: Settings, metrics: SyncMetrics, **options: Any) -> SyncConsumer:
    """A consumer of every work queue with the real clients; ``options`` go to the consumer."""
    engine = create_engine_for(settings.database_url)
    upgrade(engine)
    store = ConnectionStore(engine, SecretBox.for_settings(settings))
    intacct = create_client(
        settings,
        engine,
        on_call=lambda company, path, status, seconds: metrics.record_call("intacct", status, seconds),
    )
    flexpoint = FlexPointClient.from_settings(
        settings,
        process="sync",
        on_call=lambda resource, status, seconds: metrics.record_call("flexpoint", status, seconds),
    )
    handler = SyncHandler(
        connections=CachedConnectionLookup(store, ttl=settings.connection_cache_ttl),
        intacct=intacct,
        flexpoint=flexpoint,
    )
    connection = Connection(settings.amqp_url, transport_options={"confirm_publish": True}, heartbeat=30)
    queues = list(build_topology(settings.archive_max_age).work_queues)
    return SyncConsumer(connection, queues, handler, on_settled=_recorder(metrics), **options)


def _recorder(metrics: SyncMetrics):
    def record(group: Group, outcome: Outcome) -> None:
        metrics.group_size.observe(len(group.all_events))
        now = datetime.now(UTC)
        for event in outcome.done:
            if event.recheck:
                continue  # its lag was counted at its first settling
            received = _instant(event.envelope.get("receivedAt"))
            if received is not None:
                metrics.lag.observe(max(0.0, (now - received).total_seconds()))
        for event in outcome.done:
            metrics.events.labels(event.envelope["resource"], "done").inc()
        for event in outcome.dropped:
            metrics.events.labels(event.envelope["resource"], "dropped").inc()
        for event, failure in outcome.failed:
            metrics.failures.labels(event.envelope["resource"], failure.reason).inc()
            metrics.events.labels(event.envelope["resource"], "failed").inc()

    return record


def _instant(text: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run(settings: Settings) -> None:
    """Consume until SIGTERM/SIGINT; in-flight groups finish and are settled first."""
    settings.require("INTACCT_CLIENT_SECRET", "FLEXPOINT_API_URL", "FLEXPOINT_API_TOKEN", process="sync")
    metrics = SyncMetrics()
    consumer = build_consumer(settings, metrics)

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("sync_stopping", signal=signal.Signals(signum).name)
        consumer.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)
    start_http_server(settings.port, registry=metrics.registry)
    log.info("sync_started", metrics_port=settings.port)
    try:
        # A short drain interval: finished groups are settled (acked) within ~50 ms.
        consumer.run(safety_interval=0.05)
    finally:
        consumer.close()
        log.info("sync_stopped")
