"""The ``sync`` process: wires the store, the clients and the consumer, runs until SIGTERM."""

from __future__ import annotations

from typing import Any

from kombu import Connection

from broker.topology import build_topology
from broker.urls import kombu_url
from clients.flexpoint import FlexPointClient
from clients.intacct.client import create_client
from config import Settings
from observability.metrics import SyncMetrics
from reliability.breaker import BreakerCollector, Breakers
from store.breakers import BreakerStore
from store.connections import CachedConnectionLookup, ConnectionStore
from store.crypto import SecretBox
from store.db import create_engine_for, upgrade
from store.slots import company_slots
from workers.failures import RetryPolicy
from workers.runtime.process import require_settings, run_worker
from workers.sync.consumer import SyncConsumer
from workers.sync.handler import SyncHandler
from workers.sync.middleware import SyncMetricsRecorder


def build_consumer(settings: Settings, metrics: SyncMetrics, **options: Any) -> SyncConsumer:
    """A consumer of every work queue with the real clients; ``options`` go to the consumer."""
    engine = create_engine_for(settings.database_url)
    upgrade(engine)
    store = ConnectionStore(engine, SecretBox.for_settings(settings))
    breaker_store = BreakerStore(engine)
    breakers = Breakers.for_settings(settings, breaker_store)
    metrics.registry.register(BreakerCollector(breaker_store))
    intacct = create_client(
        settings,
        company_slots(settings, engine),
        on_call=lambda company, path, status, seconds: metrics.record_call("intacct", status, seconds),
        guard=breakers,
    )
    flexpoint = FlexPointClient.from_settings(
        settings,
        process="sync",
        on_call=lambda resource, status, seconds: metrics.record_call("flexpoint", status, seconds),
        guard=breakers,
    )
    handler = SyncHandler(
        connections=CachedConnectionLookup(store, ttl=settings.connection_cache_ttl),
        intacct=intacct,
        flexpoint=flexpoint,
    )
    connection = Connection(
        kombu_url(settings.amqp_url),
        transport_options={"confirm_publish": True},
        heartbeat=30,
        failover_strategy="round-robin",
    )
    queues = list(build_topology(settings.archive_max_age, settings.flexsync_retry_delays).work_queues)
    middleware = [SyncMetricsRecorder(metrics), *options.pop("middleware", ())]
    options.setdefault("retry", RetryPolicy.from_settings(settings))
    return SyncConsumer(connection, queues, handler, middleware=middleware, **options)


def run(settings: Settings) -> None:
    """Consume until SIGTERM/SIGINT; in-flight groups finish and are settled first."""
    require_settings(settings, "sync")
    metrics = SyncMetrics()
    # A short drain interval: finished groups are settled (acked) within ~50 ms.
    consumer = build_consumer(settings, metrics, poll_interval=0.05)
    run_worker("sync", consumer, registry=metrics.registry, port=settings.port)
