"""How long the client waits before trying a call again, and when it stops.

Retries in the client are short and bounded on purpose: they absorb FlexPoint's everyday
hiccups (QUALITY R1's 500s and 429s) within one message's handling; anything longer is the
workers' delay queues' job, which do not hold a thread or a prefetched message meanwhile.
urllib3's Retry is not used because it sleeps with ``time.sleep`` (tests could not record the
waits) and does not let the caller see each attempt for metrics.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from clients.flexpoint.errors import FlexPointError, FlexPointRateLimited


@dataclass(frozen=True)
class RetryPolicy:
    """Up to ``max_attempts`` attempts; full-jitter exponential backoff capped at ``cap`` seconds.

    A 429 waits the ``Retry-After`` FlexPoint asked for, unless that exceeds
    ``max_retry_after``: then the call gives up at once and the caller waits outside.
    """

    max_attempts: int = 4
    base: float = 0.25
    cap: float = 4.0
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**(attempt-1))], so retrying workers spread out."""
        return rng.uniform(0.0, min(self.cap, self.base * 2 ** (attempt - 1)))

    def delay(self, error: FlexPointError, attempt: int, rng: random.Random) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up and raise ``error``."""
        if not error.transient or attempt >= self.max_attempts:
            return None
        if isinstance(error, FlexPointRateLimited) and error.retry_after is not None:
            return error.retry_after if error.retry_after <= self.max_retry_after else None
        return self.backoff(attempt, rng)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After in seconds: delta-seconds or an HTTP date (RFC 9110); None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    # NaN and inf are floats too; neither is a wait anyone can honour.
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(0.0, seconds)
