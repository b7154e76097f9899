"""Replay from the archive stream: every accepted event of a time range, back to its work queue.

The stream is read from a timestamp offset (``x-stream-offset`` = ``--since``). A stream has no
"end" a consumer is told about, so the replay first appends an end marker of its own (through
the default exchange, so only the stream receives it; readers skip markers) and reads until
that marker: everything archived before the replay started is read, nothing after it, however
busy or idle the stream is. Reading also stops once events are past ``--until``.
"""

from __future__ import annotations

import collections
import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pika.exceptions import AMQPError

from broker import headers as dead_letter
from broker.admin import connect
from broker.publisher import ConfirmingPublisher, PublishError
from broker.topology import ARCHIVE_STREAM_NAME, work_queue_name
from reliability.errors import OpsError
from schemas.catalog import BY_RESOURCE, MODULES
from workers.deadletters.letters import parse_instant, text
from workers.deadletters.operations import REPLAYED_AT, REPLAYED_FROM
from workers.deadletters.selection import Selection

MARKER = "x-flexsync-archive-marker"
# Receivers stamp events with their own clocks, so the stream is ordered only roughly in time.
CLOCK_SLACK = timedelta(seconds=60)


@dataclass
class ArchiveTally:
    """Accounting of an archive replay. ``read`` counts events at or after the offset."""

    read: int = 0
    selected: int = 0
    moved: int = 0
    skipped: int = 0
    failed: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)


def _work_queue(envelope: dict[str, Any] | None, routing_key: str) -> str | None:
    synced = BY_RESOURCE.get(str((envelope or {}).get("resource", "")))
    if synced is not None:
        return work_queue_name(synced.module)
    module = routing_key.split(".", 1)[0]
    return work_queue_name(module) if module in MODULES else None


class ArchiveReplay:
    """Reads ``intacct.events.archive`` and publishes the selected events to the work queues."""

    def __init__(
        self,
        amqp_url: str,
        publisher: ConfirmingPublisher,
        *,
        dry_run: bool = False,
        rate: float | None = None,
        prefetch: int = 2000,
        stall_timeout: float = 30.0,
        confirm_timeout: float = 30.0,
        on_step: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate is not None and rate <= 0:
            raise OpsError("--rate must be more than 0 messages per second")
        self._url = amqp_url
        self._publisher = publisher
        self._dry_run = dry_run
        self._rate = rate
        self._prefetch = prefetch
        self._stall_timeout = stall_timeout
        self._confirm_timeout = confirm_timeout
        self._on_step = on_step or (lambda selected: None)
        self._clock = clock

    def run(self, selection: Selection, *, now: datetime | None = None) -> ArchiveTally:
        """Replay (or with ``dry_run`` count) the selected archived events."""
        marker = self._append_marker()
        connection = connect(self._url)
        try:
            return self._read(connection, selection, marker, now or datetime.now(UTC))
        except AMQPError as exc:
            raise OpsError(
                f"lost the connection to RabbitMQ ({type(exc).__name__}); events already moved are "
                "in their work queues (replaying them twice is harmless): run the command again"
            ) from None
        finally:
            if connection.is_open:
                connection.close()

    def _append_marker(self) -> str:
        marker = f"replay-end-{uuid.uuid4()}"
        try:
            self._publisher.publish_and_wait(
                ARCHIVE_STREAM_NAME, b"{}", timeout=10.0, message_id=marker, headers={MARKER: marker}
            )
        except PublishError as exc:
            raise OpsError(
                f"could not mark the end of the archive ({exc}); is the topology declared? "
                "run `flexsync topology`"
            ) from None
        return marker

    def _read(self, connection: Any, selection: Selection, marker: str, now: datetime) -> ArchiveTally:
        tally = ArchiveTally()
        pending: collections.deque[Future[None]] = collections.deque()
        channel = connection.channel()
        channel.basic_qos(prefetch_count=self._prefetch)
        # Chunks are stamped by the broker's clock, events by the receivers': start a little
        # early (events before --since are skipped below) so a fast receiver clock loses none.
        offset: Any = selection.since - CLOCK_SLACK if selection.since else "first"
        stamp = now.isoformat().replace("+00:00", "Z")
        last_delivery = self._clock()
        next_move = self._clock()
        unacked = 0
        for method, properties, body in _deliveries(connection, channel, {"x-stream-offset": offset}):
            if method is None:
                self._settle(pending, tally)
                if self._clock() - last_delivery > self._stall_timeout:
                    raise OpsError(
                        f"the archive stopped delivering for {self._stall_timeout:.0f} s before its end; "
                        f"moved {tally.moved} so far: run the command again"
                    )
                continue
            last_delivery = self._clock()
            # Acknowledging a stream removes nothing; it only grants the credit for more.
            unacked += 1
            if unacked >= self._prefetch // 2:
                channel.basic_ack(method.delivery_tag, multiple=True)
                unacked = 0
            headers = properties.headers or {}
            if MARKER in headers:
                if text(headers[MARKER]) == marker:
                    break
                continue
            envelope = _envelope(body)
            moment = _moment(properties, envelope)
            if moment is not None and selection.since is not None and moment < selection.since:
                continue  # an offset starts at a chunk boundary: a few earlier events come first
            if moment is not None and selection.until is not None and moment >= selection.until + CLOCK_SLACK:
                break
            tally.read += 1
            queue, headers_out = self._route(envelope, moment, method.routing_key, selection, tally, stamp)
            if queue is None:
                self._on_step(False)
                continue
            if self._dry_run:
                self._on_step(True)
                continue
            if self._rate:
                instant = self._clock()
                if next_move > instant:
                    connection.sleep(next_move - instant)
                next_move = max(instant, next_move) + 1.0 / self._rate
            pending.append(
                self._publisher.publish(
                    queue,
                    body,
                    message_id=properties.message_id or f"archive-{uuid.uuid4()}",
                    headers=headers_out,
                    content_type=properties.content_type or "application/json",
                )
            )
            self._on_step(True)
            self._settle(pending, tally)
        deadline = self._clock() + self._confirm_timeout
        while pending and self._clock() < deadline:
            self._settle(pending, tally)
            if pending:
                connection.sleep(0.01)
        tally.failed += len(pending)
        if pending:
            tally.errors["no confirm from RabbitMQ in time"] += len(pending)
        return tally

    @staticmethod
    def _route(
        envelope: dict[str, Any] | None,
        moment: datetime | None,
        routing_key: str,
        selection: Selection,
        tally: ArchiveTally,
        stamp: str,
    ) -> tuple[str | None, dict[str, Any]]:
        """The work queue and headers of a selected event, or (None, {}) when it is not selected."""
        connection_id = text((envelope or {}).get("connectionId"))
        resource = text((envelope or {}).get("resource"))
        if selection.full(tally.selected) or not selection.matches_event(connection_id, resource, moment):
            tally.skipped += 1
            return None, {}
        queue = _work_queue(envelope, routing_key)
        if queue is None:
            tally.failed += 1
            tally.errors[f"no work queue for routing key {routing_key!r}"] += 1
            return None, {}
        tally.selected += 1
        headers = {
            dead_letter.ORIGINAL_ROUTING_KEY: routing_key,
            dead_letter.ORIGINAL_QUEUE: queue,
            REPLAYED_FROM: "archive",
            REPLAYED_AT: stamp,
        }
        return queue, headers

    def _settle(self, pending: collections.deque[Future[None]], tally: ArchiveTally) -> None:
        while pending and pending[0].done():
            error = pending.popleft().exception()
            if error is None:
                tally.moved += 1
            else:
                tally.failed += 1
                tally.errors[str(error)] += 1


def _envelope(body: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return document if isinstance(document, dict) else None


def _moment(properties: Any, envelope: dict[str, Any] | None) -> datetime | None:
    moment = parse_instant((envelope or {}).get("receivedAt"))
    if moment is None and properties.timestamp:
        moment = datetime.fromtimestamp(properties.timestamp, UTC)
    return moment


def _deliveries(connection: Any, channel: Any, arguments: dict[str, Any]) -> Iterator[tuple[Any, Any, Any]]:
    """Deliveries from the stream, or (None, None, None) every 0.1 s without one.

    Not pika's ``channel.consume``: when it stops it rejects what it buffered, and a stream
    refuses rejects by closing the connection.
    """
    inbox: collections.deque[tuple[Any, Any, Any]] = collections.deque()
    channel.basic_consume(
        ARCHIVE_STREAM_NAME,
        lambda _channel, method, properties, body: inbox.append((method, properties, body)),
        arguments=arguments,
    )
    while True:
        if not inbox:
            connection.process_data_events(time_limit=0.1)
        if not inbox:
            yield None, None, None
        while inbox:
            yield inbox.popleft()
