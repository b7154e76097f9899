"""Dead-letter operations: browse, replay to the work queues, purge; each one pass (ops/sweep.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from broker import headers as dead_letter
from broker.topology import PROVISIONING_QUEUE_NAME, work_queue_name
from ops.letters import BROKER_HEADERS, DeadLetter
from ops.selection import Selection
from ops.sweep import DROP, KEEP, Action, DeadLetterPass, Decision, Tally
from schemas.catalog import BY_RESOURCE, MODULES

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
_KNOWN_QUEUES = frozenset([*(work_queue_name(m) for m in MODULES), PROVISIONING_QUEUE_NAME])


def work_queue_of(letter: DeadLetter) -> str | None:
    """The queue a dead letter came from (a retry queue counts as its work queue), or None."""
    queue = letter.original_queue or ""
    base = queue.split(".retry.", 1)[0]
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


@dataclass
class Browsed:
    """What a browse found: the selected letters (up to the limit) and how many matched."""

    letters: list[DeadLetter] = field(default_factory=list)
    matched: int = 0
    tally: Tally = field(default_factory=Tally)


def scan(sweeper: DeadLetterPass, visit: Callable[[DeadLetter], None]) -> Tally:
    """Show every dead letter to ``visit``, in queue order; every one stays in ``dead-letter``."""

    def decide(letter: DeadLetter) -> Decision:
        visit(letter)
        return KEEP

    return sweeper.run(decide)


def browse(sweeper: DeadLetterPass, selection: Selection) -> Browsed:
    """The selected dead letters, in queue order; every message stays in ``dead-letter``."""
    found = Browsed()

    def visit(letter: DeadLetter) -> None:
        if selection.matches(letter):
            found.matched += 1
            if not selection.full(len(found.letters)):
                found.letters.append(letter)

    found.tally = scan(sweeper, visit)
    return found


@dataclass
class Outcome:
    """A replay or purge: the pass's tally plus what could not even be attempted."""

    tally: Tally
    unroutable: int = 0

    @property
    def failed(self) -> int:
        return self.tally.failed + self.unroutable


def replay(sweeper: DeadLetterPass, selection: Selection, *, now: datetime | None = None) -> Outcome:
    """Move the selected dead letters to their work queues (confirmed, then acknowledged)."""
    moment = now or datetime.now(UTC)
    outcome = Outcome(Tally())
    selected = 0

    def decide(letter: DeadLetter) -> Decision:
        nonlocal selected
        if not selection.matches(letter) or selection.full(selected):
            return KEEP
        selected += 1
        queue = work_queue_of(letter)
        if queue is None:
            outcome.unroutable += 1
            outcome.tally.errors[f"no work queue known for {letter.id} (queue {letter.original_queue})"] += 1
            return KEEP
        return Decision(Action.MOVE, queue=queue, headers=replay_headers(letter, "dead", moment))

    errors = outcome.tally.errors
    outcome.tally = sweeper.run(decide)
    outcome.tally.errors.update(errors)
    return outcome


def purge(sweeper: DeadLetterPass, selection: Selection) -> Outcome:
    """Remove the selected dead letters; the others stay, in order."""
    selected = 0

    def decide(letter: DeadLetter) -> Decision:
        nonlocal selected
        if not selection.matches(letter) or selection.full(selected):
            return KEEP
        selected += 1
        return DROP

    return Outcome(sweeper.run(decide))


def count(sweeper: DeadLetterPass, selection: Selection) -> int:
    """A dry run: how many dead letters the selection would take (nothing moves)."""
    found = browse(sweeper, selection)
    return selection.capped(found.matched)
