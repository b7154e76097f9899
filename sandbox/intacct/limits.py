"""The per-company concurrency cap: Intacct's "concurrent API requests" performance tier."""

from __future__ import annotations

import threading
import time


class ConcurrencyLimiter:
    """Counts in-flight requests per company; a request beyond the cap is refused, not queued."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._in_flight: dict[str, int] = {}
        self._peak: dict[str, int] = {}
        self._changed = threading.Condition()

    def try_acquire(self, company_id: str, cap: int | None = None) -> bool:
        """Take a slot for ``company_id`` unless ``cap`` (default: the global cap) are taken."""
        limit = cap or self.cap
        with self._changed:
            current = self._in_flight.get(company_id, 0)
            if current >= limit:
                return False
            self._in_flight[company_id] = current + 1
            self._peak[company_id] = max(self._peak.get(company_id, 0), current + 1)
            self._changed.notify_all()
            return True

    def release(self, company_id: str) -> None:
        """Give back a slot taken by :meth:`try_acquire`."""
        with self._changed:
            remaining = self._in_flight.get(company_id, 0) - 1
            if remaining > 0:
                self._in_flight[company_id] = remaining
            else:
                self._in_flight.pop(company_id, None)
            self._changed.notify_all()

    def in_flight(self) -> dict[str, int]:
        with self._changed:
            return dict(self._in_flight)

    def peak(self) -> dict[str, int]:
        """The most concurrent requests each company had since the last reset."""
        with self._changed:
            return dict(self._peak)

    def reset_peak(self) -> None:
        with self._changed:
            self._peak = dict(self._in_flight)

    def wait_for(self, company_id: str, count: int, timeout: float) -> bool:
        """Block until ``company_id`` has exactly ``count`` requests in flight (tests use this)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._in_flight.get(company_id, 0) != count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True
