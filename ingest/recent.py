"""Deliveries this receiver process is publishing, or accepted a moment ago.

When copies of one delivery arrive at once, the first publishes and the others wait for its
outcome instead of publishing again; a copy arriving shortly after is answered from memory,
before the ledger's batch even committed.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future

from reliability.errors import FlexsyncError

Identity = tuple[str, str]


class DeliveryAbandoned(FlexsyncError):
    """The copy that was publishing this delivery did not get it accepted."""


class RecentDeliveries:
    """A bounded map from (connection, idempotency key) to the outcome of its first copy.

    Deliveries in flight and accepted ones are kept apart. An accepted delivery is remembered as
    a tuple of a time and a string, which Python's garbage collector stops tracking: a busy
    process remembers up to ``max_entries`` of them, and a full collection that had to visit
    each (a pause of every request thread of the process, 100-200 ms at 100,000) visits none.
    Accepted deliveries are forgotten once ``remember_seconds`` old, or oldest first beyond
    ``max_entries``; one in flight is never forgotten (its waiters need it).
    """

    def __init__(
        self,
        *,
        remember_seconds: float = 300.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._remember = remember_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        # identity -> the future later copies wait on; None until a copy waits (the first copy
        # of almost every delivery is the only one).
        self._in_flight: dict[Identity, Future[str] | None] = {}
        # identity -> (when it was accepted, its event id), oldest first.
        self._accepted: OrderedDict[Identity, tuple[float, str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._in_flight) + len(self._accepted)

    def begin(self, identity: Identity) -> Future[str] | None:
        """None for the first copy, which must call accepted or abandoned; for a later copy, a
        future of the first copy's outcome, which it must wait for."""
        now = self._clock()
        with self._lock:
            if identity in self._in_flight:
                future = self._in_flight[identity]
                if future is None:
                    future = self._in_flight[identity] = Future()
                return future
            self._forget_older_than(now - self._remember)
            accepted = self._accepted.get(identity)
            if accepted is not None:
                done: Future[str] = Future()
                done.set_result(accepted[1])
                return done
            self._in_flight[identity] = None
            return None

    def accepted(self, identity: Identity, event_id: str) -> None:
        with self._lock:
            future = self._in_flight.pop(identity, None)
            self._accepted.pop(identity, None)
            self._accepted[identity] = (self._clock(), event_id)
            while len(self._accepted) > self._max_entries:
                self._accepted.popitem(last=False)
        if future is not None and not future.done():
            future.set_result(event_id)

    def abandoned(self, identity: Identity) -> None:
        with self._lock:
            future = self._in_flight.pop(identity, None)
        if future is not None and not future.done():
            future.set_exception(DeliveryAbandoned())

    def _forget_older_than(self, cutoff: float) -> None:
        # Oldest first, so the scan stops at the first one still young enough.
        accepted = self._accepted
        while accepted:
            oldest = next(iter(accepted))
            if accepted[oldest][0] >= cutoff:
                return
            del accepted[oldest]
