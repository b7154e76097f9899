"""The ``sync`` process: wires the store, the clients and the consumer, runs until SIGTERM."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from config import Settings
from observability.metrics import SyncMetrics, company_tagger
from processes.parts import ProcessParts, wait_for_database
from reliability.breaker import BreakerCollector
from store.breakers import BreakerStore
from workers.connections.cache import CachedConnectionLookup
from workers.runtime.failures import RetrySchedule
from workers.runtime.process import require_settings, run_worker
from workers.sync.consumer import SyncConsumer
from workers.sync.handler import SyncHandler
from workers.sync.middleware import SyncMetricsRecorder


@dataclass
class Sync:
    """The consumer of every work queue and the parts it runs on; a worker for ``run_worker``."""

    parts: ProcessParts
    consumer: SyncConsumer
    metrics: SyncMetrics

    def run(self) -> None:
        self.consumer.run()

    def stop(self) -> None:
        self.consumer.stop()

    def close(self) -> None:
        """The consumer, the broker connection, the clients, then the engine."""
        self.parts.close()


def build(settings: Settings, metrics: SyncMetrics | None = None, **options: Any) -> Sync:
    """A consumer of every work queue with the real clients; ``options`` go to the consumer."""
    parts = ProcessParts(settings, process="sync")
    try:
        metrics = metrics if metrics is not None else parts.metrics(SyncMetrics)
        metrics.registry.register(
            BreakerCollector(
                BreakerStore(parts.engine), company_label=company_tagger(settings.flexsync_secret_key)
            )
        )
        intacct = parts.intacct(
            on_call=lambda company, path, status, seconds: metrics.record_call("intacct", status, seconds),
            guard=parts.breakers,
        )
        flexpoint = parts.flexpoint(
            on_call=lambda resource, status, seconds: metrics.record_call("flexpoint", status, seconds),
            guard=parts.breakers,
        )
        handler = SyncHandler(
            connections=CachedConnectionLookup(parts.connections, ttl=settings.connection_cache_ttl),
            intacct=intacct,
            flexpoint=flexpoint,
        )
        middleware = [SyncMetricsRecorder(metrics), *options.pop("middleware", ())]
        options.setdefault("retry", RetrySchedule.from_settings(settings))
        consumer = SyncConsumer(
            parts.amqp_connection(),
            list(parts.topology.work_queues),
            handler,
            middleware=middleware,
            **options,
        )
        parts.adopt("consumer", consumer)
        # A peer back: what waits in the delay queues for it goes back to work at once.
        parts.breakers.on_closed(lambda peer: consumer.release_delayed())
    except BaseException:
        parts.close()
        raise
    return Sync(parts, consumer, metrics)


def run(settings: Settings) -> None:
    """Consume until SIGTERM/SIGINT; in-flight groups finish and are settled first."""
    require_settings(settings, "sync")
    if not wait_for_database(settings, "sync"):
        return
    # A short drain interval: finished groups are settled (acked) within ~50 ms.
    sync = build(settings, poll_interval=0.05)
    run_worker(
        "sync",
        sync,
        registry=sync.metrics.registry,
        port=settings.port,
        bind=settings.flexsync_metrics_bind,
        token=settings.flexsync_metrics_token,
    )
