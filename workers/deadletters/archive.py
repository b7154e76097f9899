"""Replay from the archive stream: every accepted event of a time range, back to its work queue.

The stream is read from a timestamp offset (``x-stream-offset`` = ``--since``) by the worker
runtime's stream reader (workers/runtime/stream.py), which also takes a lost connection up again
from the next offset. A stream has no "end" a consumer is told about, so the replay first appends
an end marker of its own (through the default exchange, so only the stream receives it; readers
skip markers) and reads until that marker: everything archived before the replay started is read,
nothing after it, however busy or idle the stream is. Reading also stops once events are past
``--until``.
"""

from __future__ import annotations

import collections
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from broker import headers as dead_letter
from broker.admin import unreachable
from broker.publisher import ConfirmingPublisher, PublishError
from broker.topology import ARCHIVE_STREAM_NAME, work_queue_name
from broker.urls import kombu_connection
from reliability.errors import OpsError
from reliability.leases import new_holder
from schemas.catalog import BY_RESOURCE, MODULES
from workers.deadletters.letters import parse_instant, text
from workers.deadletters.operations import REPLAYED_AT, REPLAYED_FROM
from workers.deadletters.selection import Selection
from workers.deadletters.store import ARCHIVE_RENEW_SECONDS, ArchiveClaims
from workers.runtime.stream import GaveUp, StreamReader

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
        claims: ArchiveClaims | None = None,
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
        self._claims = claims

    def run(self, selection: Selection, *, now: datetime | None = None) -> ArchiveTally:
        """Replay (or with ``dry_run`` count) the selected archived events.

        A replay (not a dry run) given ``claims`` first claims its range (connection and
        resource), renews the claim while it reads and gives it up at the end: a second replay of
        the range started meanwhile refuses with :class:`OpsError` rather than publish it again.
        """
        claim = None
        if self._claims is not None and not self._dry_run:
            claim = _Claim(self._claims, selection, self._clock)
        try:
            return self._run(selection, now, claim)
        finally:
            if claim is not None:
                claim.release()

    def _run(self, selection: Selection, now: datetime | None, claim: _Claim | None) -> ArchiveTally:
        marker = self._append_marker()
        read = _Read(self, selection, marker, now or datetime.now(UTC), claim)
        # Chunks are stamped by the broker's clock, events by the receivers': start a little
        # early (events before --since are skipped) so a fast receiver clock loses none.
        offset: Any = selection.since - CLOCK_SLACK if selection.since else "first"
        reader = StreamReader(
            kombu_connection(self._url),
            ARCHIVE_STREAM_NAME,
            offset=offset,
            take=read.take,
            idle=read.idle,
            prefetch=self._prefetch,
        )
        try:
            reader.run()
        except GaveUp as exc:
            raise OpsError(
                f"{unreachable(self._url, exc)}; events already moved are in their work queues "
                "(replaying them twice is harmless): run the command again"
            ) from None
        finally:
            reader.close()
        return read.finish()

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


class _Claim:
    """One replay's claim on its range, taken at once and renewed as it reads."""

    def __init__(self, claims: ArchiveClaims, selection: Selection, clock: Callable[[], float]) -> None:
        self._claims = claims
        self._key = claims.range_key(selection.connection, selection.resource)
        self._holder = new_holder()
        self._clock = clock
        held_by = claims.claim(self._key, self._holder, selection.describe())
        if held_by is not None:
            raise OpsError(
                f"another replay of the archive is running for this range ({held_by}); let it "
                "finish (or wait until its claim runs out, 2 minutes after it stopped) and run "
                "this one again if it is still needed"
            )
        self._renewed = clock()

    def keep(self) -> None:
        """Renew the claim when it is due; a claim lost (it ran out and was taken) stops the replay."""
        if self._clock() - self._renewed < ARCHIVE_RENEW_SECONDS:
            return
        if not self._claims.renew(self._key, self._holder):
            raise OpsError(
                "this replay lost its claim on the archive range (it stalled past its lease) and "
                "another replay took it over; events already moved are in their work queues"
            )
        self._renewed = self._clock()

    def release(self) -> None:
        with contextlib.suppress(Exception):  # it runs out by itself anyway
            self._claims.release(self._key, self._holder)


class _Read:
    """One replay's read of the stream: each message taken on the reader's thread, in order."""

    def __init__(
        self, replay: ArchiveReplay, selection: Selection, marker: str, now: datetime, claim: _Claim | None
    ) -> None:
        self._replay = replay
        self._claim = claim
        self._selection = selection
        self._marker = marker
        self._stamp = now.isoformat().replace("+00:00", "Z")
        self.tally = ArchiveTally()
        self._pending: collections.deque[Future[None]] = collections.deque()
        self._last_delivery = replay._clock()
        self._next_move = replay._clock()

    def take(self, message: Any) -> bool:
        """One archived message; False once the read is over (the marker, or past --until)."""
        replay, selection, tally = self._replay, self._selection, self.tally
        self._last_delivery = replay._clock()
        if self._claim is not None:
            self._claim.keep()
        headers = message.headers or {}
        if MARKER in headers:
            return text(headers[MARKER]) != self._marker
        envelope = _envelope(message.body)
        moment = _moment(message.properties, envelope)
        if moment is not None and selection.since is not None and moment < selection.since:
            return True  # an offset starts at a chunk boundary: a few earlier events come first
        if moment is not None and selection.until is not None and moment >= selection.until + CLOCK_SLACK:
            return False
        tally.read += 1
        routing_key = message.delivery_info.get("routing_key", "")
        queue, headers_out = replay._route(envelope, moment, routing_key, selection, tally, self._stamp)
        if queue is None:
            replay._on_step(False)
            return True
        if replay._dry_run:
            replay._on_step(True)
            return True
        if replay._rate:
            instant = replay._clock()
            if self._next_move > instant:
                time.sleep(self._next_move - instant)
            self._next_move = max(instant, self._next_move) + 1.0 / replay._rate
        self._pending.append(
            replay._publisher.publish(
                queue,
                message.body,
                message_id=message.properties.get("message_id") or f"archive-{uuid.uuid4()}",
                headers=headers_out,
                content_type=message.content_type or "application/json",
            )
        )
        replay._on_step(True)
        self._settle()
        return True

    def idle(self) -> None:
        """Each turn of the reader's loop: settle confirms, and give up on a stalled stream."""
        self._settle()
        if self._claim is not None:
            self._claim.keep()
        stall = self._replay._stall_timeout
        if self._replay._clock() - self._last_delivery > stall:
            raise OpsError(
                f"the archive stopped delivering for {stall:.0f} s before its end; "
                f"moved {self.tally.moved} so far: run the command again"
            )

    def finish(self) -> ArchiveTally:
        """Wait for the last confirms (up to the confirm timeout); what is unconfirmed failed."""
        deadline = self._replay._clock() + self._replay._confirm_timeout
        while self._pending and self._replay._clock() < deadline:
            self._settle()
            if self._pending:
                futures.wait([self._pending[0]], timeout=max(0.0, deadline - self._replay._clock()))
        self._settle()
        self.tally.failed += len(self._pending)
        if self._pending:
            self.tally.errors["no confirm from RabbitMQ in time"] += len(self._pending)
        return self.tally

    def _settle(self) -> None:
        while self._pending and self._pending[0].done():
            error = self._pending.popleft().exception()
            if error is None:
                self.tally.moved += 1
            else:
                self.tally.failed += 1
                self.tally.errors[str(error)] += 1


def _envelope(body: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return document if isinstance(document, dict) else None


def _moment(properties: dict[str, Any], envelope: dict[str, Any] | None) -> datetime | None:
    moment = parse_instant((envelope or {}).get("receivedAt"))
    stamp = properties.get("timestamp")
    if moment is None and isinstance(stamp, datetime):
        moment = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)  # the AMQP client's UTC
    elif moment is None and isinstance(stamp, int | float):
        moment = datetime.fromtimestamp(stamp, UTC)
    return moment
