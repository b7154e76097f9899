"""One pass over the ``dead-letter`` queue that settles every message it finds there.

Each message present when the pass starts is received once and decided: *move* (publish it to
a work queue), *keep* (publish a copy to the tail of ``dead-letter``) or *drop* (purge). The
original is acknowledged only after its copy is confirmed by the broker, so an interrupted pass
loses nothing: at worst a message is there twice, and the next pass removes byte-identical
copies (same id) of what it keeps. Keeping by re-publishing, rather than rejecting back with
``requeue``, is what makes browsing safe: a requeue counts as a delivery of a quorum queue and
walks the message toward a delivery limit, where the broker would drop it; a fresh copy starts
at zero. After a full pass the kept messages are in their original order.
"""

from __future__ import annotations

import collections
import enum
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from pika.exceptions import AMQPError, ChannelClosedByBroker

from broker.admin import connect, queue_counts
from broker.publisher import ConfirmingPublisher
from broker.topology import DEAD_LETTER_QUEUE_NAME
from reliability.errors import OpsError
from workers.deadletters.letters import SYNTHETIC_ID_PREFIX, DeadLetter, read_letter


class Action(enum.Enum):
    KEEP = "keep"
    MOVE = "move"
    DROP = "drop"


@dataclass(frozen=True)
class Decision:
    """What to do with one dead letter; ``queue`` and ``headers`` are for a move."""

    action: Action
    queue: str | None = None
    headers: dict[str, Any] | None = None


KEEP = Decision(Action.KEEP)
DROP = Decision(Action.DROP)


@dataclass
class Tally:
    """Exact accounting of a pass: every message scanned ends in one of the other counts."""

    scanned: int = 0
    moved: int = 0
    kept: int = 0
    dropped: int = 0
    duplicates: int = 0
    failed: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)


@dataclass
class _Slot:
    tag: int
    position: int
    future: Future[None] | None
    decision: Decision
    duplicate: bool


Decide = Callable[[DeadLetter], Decision]


class DeadLetterPass:
    """Runs passes over ``dead-letter`` with one consumer connection and a confirming publisher."""

    def __init__(
        self,
        amqp_url: str,
        publisher: ConfirmingPublisher,
        *,
        prefetch: int = 2000,
        rate: float | None = None,
        idle_timeout: float = 3.0,
        confirm_timeout: float = 30.0,
        on_start: Callable[[int], None] | None = None,
        on_step: Callable[[DeadLetter, Decision], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate is not None and rate <= 0:
            raise OpsError("--rate must be more than 0 messages per second")
        self._url = amqp_url
        self._publisher = publisher
        self._prefetch = prefetch
        self._rate = rate
        self._idle_timeout = idle_timeout
        self._confirm_timeout = confirm_timeout
        self._on_start = on_start or (lambda total: None)
        self._on_step = on_step or (lambda letter, decision: None)
        self._clock = clock

    def run(self, decide: Decide) -> Tally:
        """Decide and settle every message in the queue now; returns the accounting."""
        connection = connect(self._url)
        try:
            return self._run(connection, decide)
        except ChannelClosedByBroker as exc:
            if exc.reply_code == 403:
                raise OpsError(
                    "another flexsync command is reading the dead-letter queue (it is held "
                    "exclusively); wait for it to finish and run this again"
                ) from None
            raise OpsError(f"RabbitMQ closed the channel: {exc}; nothing unconfirmed was removed") from None
        except AMQPError as exc:
            raise OpsError(
                f"lost the connection to RabbitMQ ({type(exc).__name__}); nothing unconfirmed was "
                "removed from dead-letter: run the command again"
            ) from None
        finally:
            # Whatever is still unacknowledged goes back to dead-letter when the channel closes.
            if connection.is_open:
                connection.close()

    def _run(self, connection: Any, decide: Decide) -> Tally:
        tally = Tally()
        channel = connection.channel()
        depth, _ = queue_counts(channel, DEAD_LETTER_QUEUE_NAME)
        self._on_start(depth)
        if depth == 0:
            return tally
        prefetch = min(self._prefetch, depth)
        channel.basic_qos(prefetch_count=prefetch)
        # The broker delivers at most `prefetch` beyond what is acknowledged. Holding back the
        # acks of the last `prefetch` positions until all `depth` arrived means it can never
        # hand us our own copies from the tail, which would be seen twice.
        state = _State(hold=depth - prefetch)
        seen: set[str] = set()
        next_move = self._clock()
        last_delivery = self._clock()
        received = 0
        for method, properties, body in channel.consume(
            DEAD_LETTER_QUEUE_NAME, exclusive=True, inactivity_timeout=0.05
        ):
            if method is None:
                self._settle(channel, state, tally, all_in=False)
                if self._clock() - last_delivery > self._idle_timeout:
                    # Deliveries stopped short of the count: a failed copy's original keeps its
                    # prefetch slot to the end (basic.qos cannot widen a running consumer), or
                    # someone purged. Settle what is in hand; the rest stays for the next pass.
                    unreached = depth - received
                    tally.failed += unreached
                    tally.errors["not reached in this pass; run the command again"] += unreached
                    break
                continue
            last_delivery = self._clock()
            received += 1
            letter = read_letter(properties, body)
            duplicate = letter.id in seen
            seen.add(letter.id)
            decision = DROP if duplicate else decide(letter)
            if decision.action is Action.MOVE and self._rate:
                now = self._clock()
                if next_move > now:
                    connection.sleep(next_move - now)
                next_move = max(now, next_move) + 1.0 / self._rate
            future = self._send(letter, decision)
            state.window.append(_Slot(method.delivery_tag, received, future, decision, duplicate))
            tally.scanned += 1
            self._on_step(letter, decision)
            if received >= depth:
                break
            self._settle(channel, state, tally, all_in=False)
        # Stop the consumer before the last acknowledgements: once they free its prefetch the
        # broker would hand it our own copies from the tail, and cancelling then would requeue
        # them (a counted delivery, and out of order).
        channel.cancel()
        deadline = self._clock() + self._confirm_timeout
        while state.window and self._clock() < deadline:
            self._settle(channel, state, tally, all_in=True)
            if state.window:
                connection.sleep(0.01)
        for slot in state.window:
            self._count_failure(slot, tally, "no confirm from RabbitMQ in time")
        return tally

    def _send(self, letter: DeadLetter, decision: Decision) -> Future[None] | None:
        if decision.action is Action.DROP:
            return None
        if decision.action is Action.MOVE:
            queue, headers = decision.queue, decision.headers
        else:
            queue = DEAD_LETTER_QUEUE_NAME
            headers = {k: v for k, v in letter.headers.items() if k != "x-delivery-count"}
        assert queue is not None
        return self._publisher.publish(
            queue,
            letter.body,
            message_id=letter.message_id or f"{SYNTHETIC_ID_PREFIX}{letter.id}",
            headers=headers,
            content_type=letter.properties.content_type or "application/json",
        )

    def _settle(self, channel: Any, state: _State, tally: Tally, *, all_in: bool) -> None:
        """Acknowledge the confirmed prefix of the window (with ``multiple`` while none failed)."""
        last_ok: int | None = None
        window = state.window
        while window:
            slot = window[0]
            if not all_in and slot.position > state.hold:
                break
            if slot.future is not None and not slot.future.done():
                break
            window.popleft()
            error = slot.future.exception() if slot.future is not None else None
            if error is not None:
                if last_ok is not None:
                    channel.basic_ack(last_ok, multiple=True)
                    last_ok = None
                state.failed = True
                self._count_failure(slot, tally, str(error))
                continue
            self._count_success(slot, tally)
            if state.failed:
                # A failed one stays unacknowledged (it returns to dead-letter on close), so
                # `multiple` must no longer sweep over it.
                channel.basic_ack(slot.tag)
            else:
                last_ok = slot.tag
        if last_ok is not None:
            channel.basic_ack(last_ok, multiple=True)

    @staticmethod
    def _count_success(slot: _Slot, tally: Tally) -> None:
        if slot.duplicate:
            tally.duplicates += 1
        elif slot.decision.action is Action.MOVE:
            tally.moved += 1
        elif slot.decision.action is Action.KEEP:
            tally.kept += 1
        else:
            tally.dropped += 1

    @staticmethod
    def _count_failure(slot: _Slot, tally: Tally, error: str) -> None:
        # The original was not acknowledged: it stays in dead-letter whatever was decided.
        if slot.decision.action is Action.MOVE:
            tally.failed += 1
            tally.errors[error] += 1
        else:
            tally.kept += 1


@dataclass
class _State:
    hold: int
    window: collections.deque[_Slot] = field(default_factory=collections.deque)
    failed: bool = False
