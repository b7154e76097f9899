"""The sync worker's middleware: the recheck of still-changing records, and its metrics."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from broker.topology import RETRY_DELAYS_SECONDS, delay_queue_name
from observability.logging import get_logger
from observability.metrics import SyncMetrics
from workers.runtime.failures import RECHECK, delayed_headers, nearest_delay_queue
from workers.runtime.middleware import Middleware
from workers.sync.groups import Group
from workers.sync.handler import GroupOutcome

log = get_logger(__name__)


class Recheck(Middleware):
    """Sends a copy of each event to be looked at again through the shortest delay queue.

    The copy carries the ``RECHECK`` header and is confirmed before the original is acked: a
    record read while its modification second was still open is read once more when it is final.
    """

    def __init__(
        self,
        delay: int = RETRY_DELAYS_SECONDS[0],
        *,
        existing: Callable[[], Collection[str]] | None = None,
        delays: Sequence[int] = RETRY_DELAYS_SECONDS,
    ) -> None:
        self.delay = delay
        # The delay queues the consumer found on its connection (None: not checked). A copy sent
        # to one the broker lacks would be dropped and confirmed all the same.
        self._existing = existing
        self._delays = delays

    def before_settle(self, unit: Group, outcome: GroupOutcome, producer: Any) -> None:
        for event in outcome.recheck:
            message = event.message
            queue: str | None = delay_queue_name(event.queue, self.delay)
            if self._existing is not None and queue not in (found := self._existing()):
                queue = nearest_delay_queue(event.queue, self.delay, found, self._delays)
                if queue is None:
                    # The event itself is done; only its second read is given up, and said so.
                    log.warning("sync_recheck_skipped", queue=event.queue, reason="no delay queue declared")
                    continue
            producer.publish(
                message.body,
                exchange="",
                routing_key=queue,
                headers=delayed_headers({**(message.headers or {}), RECHECK: 1}, self.delay),
                delivery_mode=2,
                content_type=message.content_type,
                content_encoding=message.content_encoding,
                message_id=message.properties.get("message_id"),
                retry=False,
            )


class SyncMetricsRecorder(Middleware):
    """Counts each settled group's events by outcome, its size, and the lag of the done ones."""

    def __init__(self, metrics: SyncMetrics) -> None:
        self.metrics = metrics

    def after_settle(self, unit: Group, outcome: GroupOutcome) -> None:
        metrics = self.metrics
        metrics.group_size.observe(len(unit.all_events))
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


def _instant(text: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
