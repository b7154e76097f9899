"""Dead-letter operations on the ``dead_letters`` table: browse, replay to the work queues, purge.

Each operation first stores what waits in the ``dead-letter`` queue (workers/deadletters/storer.py), so it
sees every letter whether or not the storing consumer of the ``provisioning`` process runs. A replay claims each
chunk of letters, publishes each copy with a confirm and only then marks its row replayed, so a
replay interrupted and run again moves each letter once (a process killed between a confirm and
the commit that follows can repeat at most that one chunk; events are idempotent downstream),
and two replays run at once leave each other's letters alone.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from broker import headers as dead_letter
from broker.publisher import ConfirmingPublisher, PublishError
from broker.topology import PROVISIONING_QUEUE_NAME, WRITEBACK_QUEUE_NAME, work_queue_name
from reliability.errors import OpsError
from reliability.leases import new_holder
from schemas.catalog import BY_RESOURCE, MODULES
from workers.deadletters.letters import BROKER_HEADERS, SYNTHETIC_ID_PREFIX, DeadLetter
from workers.deadletters.selection import Selection
from workers.deadletters.store import PURGED, REPLAYED, DeadLetterStore, LetterQuery
from workers.deadletters.storer import StoringConsumer, letter_of

REPLAYED_AT = "x-flexsync-replayed-at"
REPLAYED_FROM = "x-flexsync-replayed-from"
_RESET_HEADERS = (
    dead_letter.ATTEMPTS,
    dead_letter.REASON,
    dead_letter.EXCEPTION,
    dead_letter.FAILED_AT,
    dead_letter.RECHECK,
    *BROKER_HEADERS,
)
# Every queue whose worker parks letters: a payment's routing key and body name no sync module,
# so a letter from ``writeback`` (or its delay queues) is known by its queue alone.
_KNOWN_QUEUES = frozenset(
    [*(work_queue_name(m) for m in MODULES), PROVISIONING_QUEUE_NAME, WRITEBACK_QUEUE_NAME]
)


def work_queue_of(letter: DeadLetter) -> str | None:
    """The queue a dead letter came from (a delay queue counts as its work queue), or None."""
    queue = letter.original_queue or ""
    # ``.retry.``: the delay queues' names before they lost their TTL (broker.topology).
    base = queue.split(".delay.", 1)[0].split(".retry.", 1)[0]
    if base in _KNOWN_QUEUES:
        return base
    synced = BY_RESOURCE.get(letter.resource or "")
    if synced is not None:
        return work_queue_name(synced.module)
    module = (letter.original_routing_key or "").split(".", 1)[0]
    return work_queue_name(module) if module in MODULES else None


def replay_headers(letter: DeadLetter, source: str, now: datetime) -> dict[str, Any]:
    """The headers of a replayed copy: attempts reset, failure details dropped, origin kept."""
    headers = {k: v for k, v in letter.headers.items() if k not in _RESET_HEADERS}
    if letter.original_routing_key:
        headers[dead_letter.ORIGINAL_ROUTING_KEY] = letter.original_routing_key
    headers[REPLAYED_FROM] = source
    headers[REPLAYED_AT] = now.isoformat().replace("+00:00", "Z")
    return headers


def query_of(selection: Selection) -> LetterQuery:
    """The table filters of a selection (its limit is applied by the operation)."""
    return LetterQuery(
        connection=selection.connection,
        resource=selection.resource,
        reason=selection.reason,
        since=selection.since,
        until=selection.until,
        ids=selection.ids,
    )


Step = Callable[[DeadLetter, str | None], None]


@dataclass
class Tally:
    """Exact accounting of an operation: every letter scanned ends in one of the other counts."""

    scanned: int = 0
    moved: int = 0
    kept: int = 0
    dropped: int = 0
    duplicates: int = 0
    failed: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)


class DeadLetters:
    """The table, the queue that feeds it, and a confirming publisher for replays."""

    def __init__(
        self,
        store: DeadLetterStore,
        amqp_url: str,
        publisher: ConfirmingPublisher | None = None,
        *,
        rate: float | None = None,
        batch: int = 200,
        confirm_timeout: float = 30.0,
        on_start: Callable[[int], None] | None = None,
        on_step: Step | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        if rate is not None and rate <= 0:
            raise OpsError("--rate must be more than 0 messages per second")
        self.store = store
        self._url = amqp_url
        self._publisher = publisher
        self._rate = rate
        # With a rate, settle in smaller chunks so a kill repeats at most half a second of moves.
        self._batch = max(1, min(batch, int(rate / 2))) if rate else max(1, batch)
        self._confirm_timeout = confirm_timeout
        self._on_start = on_start or (lambda total: None)
        self._on_step = on_step or (lambda letter, queue: None)
        self._stop = stop or threading.Event()

    def drain(self) -> int:
        """Store what waits in ``dead-letter``; returns how many were redeliveries already stored."""
        return StoringConsumer.for_url(self._url, self.store, until_idle=0.3).drain().duplicates

    def stored(self) -> int:
        return self.store.count(LetterQuery())

    def selected(self, selection: Selection, chunk: int) -> list[list[DeadLetter]]:
        """The selected letters, oldest first, in chunks (at most ``selection.limit``)."""
        rows = self.store.find(query_of(selection), limit=selection.limit)
        letters = [letter_of(row) for row in rows]
        return [letters[n : n + chunk] for n in range(0, len(letters), chunk)]

    def pace(self, next_at: float) -> float:
        """Wait for the next publish slot under ``rate``; returns the slot after it."""
        if self._rate is None:
            return next_at
        now = time.monotonic()
        if next_at > now:
            self._stop.wait(next_at - now)
        return max(now, next_at) + 1 / self._rate

    def publish(self, letter: DeadLetter, queue: str, now: datetime) -> Future[None]:
        if self._publisher is None:
            raise OpsError("a replay needs a confirming publisher")
        return self._publisher.publish(
            queue,
            letter.body,
            message_id=letter.message_id or f"{SYNTHETIC_ID_PREFIX}{letter.id}",
            headers=replay_headers(letter, "dead", now),
            content_type=letter.properties.content_type or "application/json",
        )

    @property
    def batch(self) -> int:
        return self._batch

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def started(self, total: int) -> None:
        self._on_start(total)

    def stepped(self, letter: DeadLetter, queue: str | None) -> None:
        self._on_step(letter, queue)

    def wait(self, future: Future[None]) -> str | None:
        """None once confirmed, else why not."""
        try:
            future.result(timeout=self._confirm_timeout)
        except PublishError as exc:
            return str(exc) or type(exc).__name__
        except TimeoutError:
            return f"RabbitMQ did not confirm within {self._confirm_timeout:.0f} s"
        return None


@dataclass
class Browsed:
    """What a browse found: the selected letters (up to the limit) and how many matched."""

    letters: list[DeadLetter] = field(default_factory=list)
    matched: int = 0
    tally: Tally = field(default_factory=Tally)


def browse(letters: DeadLetters, selection: Selection) -> Browsed:
    """The selected stored dead letters, oldest first; nothing changes."""
    tally = Tally(duplicates=letters.drain())
    tally.scanned = tally.kept = letters.stored()
    query = query_of(selection)
    found = [letter_of(row) for row in letters.store.find(query, limit=selection.limit)]
    return Browsed(found, letters.store.count(query), tally)


@dataclass
class ActionOutcome:
    """A replay or purge: its tally plus what could not even be attempted, and what it left to
    another replay running at the same time (``busy``: that one is moving them)."""

    tally: Tally
    unroutable: int = 0
    busy: int = 0

    @property
    def failed(self) -> int:
        return self.tally.failed + self.unroutable


def replay(letters: DeadLetters, selection: Selection, *, now: datetime | None = None) -> ActionOutcome:
    """Publish the selected letters to their work queues; each row is marked once confirmed.

    Each chunk is claimed first: letters another replay holds right now are left to it (counted
    as ``busy``), so replays run at once never publish a letter twice.
    """
    moment = now or datetime.now(UTC)
    tally = Tally(duplicates=letters.drain())
    tally.scanned = letters.stored()
    outcome = ActionOutcome(tally)
    chunks = letters.selected(selection, letters.batch)
    letters.started(sum(len(chunk) for chunk in chunks))
    holder = new_holder()
    held: list[str] = []
    next_at = time.monotonic()
    try:
        for chunk in chunks:
            if letters.stopped:
                break
            queues: dict[str, str] = {}
            for letter in chunk:
                queue = work_queue_of(letter)
                if queue is None:
                    outcome.unroutable += 1
                    tally.errors[f"no work queue known for {letter.id} (queue {letter.original_queue})"] += 1
                else:
                    queues[letter.id] = queue
            held = letters.store.claim(list(queues), holder)
            claimed = set(held)
            outcome.busy += len(queues) - len(claimed)
            sent: list[tuple[DeadLetter, Future[None]]] = []
            for letter in chunk:
                if letter.id in claimed:
                    next_at = letters.pace(next_at)
                    sent.append((letter, letters.publish(letter, queues[letter.id], moment)))
            confirmed: list[str] = []
            for letter, future in sent:
                error = letters.wait(future)
                if error is None:
                    confirmed.append(letter.id)
                else:
                    tally.failed += 1
                    tally.errors[error] += 1
            tally.moved += letters.store.settle(confirmed, REPLAYED, now=moment, holder=holder)
            # Settling gave up the claim on the confirmed ones; the failed ones are free for a retry.
            letters.store.release(claimed.difference(confirmed), holder)
            held = []
            for letter in chunk:
                letters.stepped(letter, queues.get(letter.id))
    finally:
        # Stopped by an error between a claim and its settling: the next run may take them at once.
        if held:
            with contextlib.suppress(Exception):
                letters.store.release(held, holder)
        tally.kept = tally.scanned - tally.moved - tally.failed
    return outcome


def purge(letters: DeadLetters, selection: Selection, *, now: datetime | None = None) -> ActionOutcome:
    """Mark the selected letters purged (rows are kept for the record); the others stay."""
    tally = Tally(duplicates=letters.drain())
    tally.scanned = letters.stored()
    chunks = letters.selected(selection, 1000)
    letters.started(sum(len(chunk) for chunk in chunks))
    for chunk in chunks:
        if letters.stopped:
            break
        tally.dropped += letters.store.settle([letter.id for letter in chunk], PURGED, now=now)
        for letter in chunk:
            letters.stepped(letter, None)
    tally.kept = tally.scanned - tally.dropped
    return ActionOutcome(tally)


def count(letters: DeadLetters, selection: Selection) -> int:
    """A dry run: how many dead letters the selection would take (nothing moves)."""
    letters.drain()
    return selection.capped(letters.store.count(query_of(selection)))
