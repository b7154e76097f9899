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
    """A bounded map from (connection, idempotency key) to the outcome of its first copy."""

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
        # identity -> [future of the event id or None until a copy waits on it, time it
        # finished or None while in flight, the event id once accepted]. The future is made only
        # for a copy that waits: the first copy of almost every delivery is the only one.
        self._entries: OrderedDict[Identity, list] = OrderedDict()

    def begin(self, identity: Identity) -> Future[str] | None:
        """None for the first copy, which must call accepted or abandoned; for a later copy, a
        future of the first copy's outcome, which it must wait for."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(identity)
            if entry is not None:
                future, finished, event_id = entry
                if finished is None or now - finished < self._remember:
                    if future is None:
                        future = entry[0] = Future()
                        if event_id is not None:
                            future.set_result(event_id)
                    return future
                del self._entries[identity]
            self._entries[identity] = [None, None, None]
            self._evict()
            return None

    def accepted(self, identity: Identity, event_id: str) -> None:
        with self._lock:
            entry = self._entries.get(identity)
            if entry is not None:
                entry[1], entry[2] = self._clock(), event_id
                self._entries.move_to_end(identity)
                future = entry[0]
            else:
                future = None
        if future is not None and not future.done():
            future.set_result(event_id)

    def abandoned(self, identity: Identity) -> None:
        with self._lock:
            entry = self._entries.pop(identity, None)
        if entry is not None and entry[0] is not None and not entry[0].done():
            entry[0].set_exception(DeliveryAbandoned())

    def _evict(self) -> None:
        # Oldest first; an in-flight entry is never dropped (its waiters need it), only passed.
        for _ in range(len(self._entries)):
            if len(self._entries) <= self._max_entries:
                return
            oldest, (_future, finished, _event_id) = next(iter(self._entries.items()))
            if finished is None:
                self._entries.move_to_end(oldest)
            else:
                del self._entries[oldest]
