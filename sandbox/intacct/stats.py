"""What the simulator saw: API calls per company and object, answers per status, recent requests.

Benchmarks read these over HTTP to report Intacct calls per event and 429s; tests read the
request log to check which headers a client sent (e.g. ``X-IA-API-Param-Entity``).
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from typing import Any

_LOG_CAPACITY = 2000


class CallStats:
    """Thread-safe counters and a bounded log of recent API requests; resettable."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: Counter[tuple[str, str]] = Counter()
        self._statuses: Counter[tuple[str, int]] = Counter()
        self._log: deque[dict[str, Any]] = deque(maxlen=_LOG_CAPACITY)

    def call(self, company_id: str, object_path: str) -> None:
        """Count one API call of a company on an object."""
        with self._lock:
            self._calls[(company_id, object_path)] += 1

    def answered(self, company_id: str, status: int, entry: dict[str, Any]) -> None:
        """Count a company's answer by status and log the request."""
        with self._lock:
            self._statuses[(company_id, status)] += 1
            self._log.append(entry)

    def snapshot(self, company_id: str | None = None) -> dict[str, Any]:
        """Counters so far (of one company, or all) in the admin API's shape."""
        with self._lock:
            calls: dict[str, dict[str, int]] = {}
            for (company, path), count in sorted(self._calls.items()):
                if company_id in (None, company):
                    calls.setdefault(company, {})[path] = count
            statuses: dict[str, dict[str, int]] = {}
            for (company, status), count in sorted(self._statuses.items()):
                if company_id in (None, company):
                    statuses.setdefault(company, {})[str(status)] = count
        return {
            "calls": calls,
            "responses": statuses,
            "totalCalls": sum(sum(c.values()) for c in calls.values()),
            "tooManyRequests": sum(s.get("429", 0) for s in statuses.values()),
        }

    def requests(self, company_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent requests, newest last."""
        with self._lock:
            entries = [e for e in self._log if company_id in (None, e.get("companyId"))]
        return entries[-limit:] if limit > 0 else []

    def reset(self) -> None:
        """Forget every count and logged request."""
        with self._lock:
            self._calls.clear()
            self._statuses.clear()
            self._log.clear()
