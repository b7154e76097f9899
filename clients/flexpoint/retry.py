"""How long the client waits before trying a call again, and when it stops.

Retries in the client are short and bounded on purpose: they absorb FlexPoint's everyday
hiccups (QUALITY R1's 500s and 429s) within one message's handling; anything longer is the
workers' delay queues' job, which do not hold a thread or a prefetched message meanwhile.
urllib3's Retry is not used because it sleeps with ``time.sleep`` (tests could not record the
waits) and does not let the caller see each attempt for metrics. The backoff and the reading
of ``Retry-After`` are the shared ones of ``reliability``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from clients.flexpoint.errors import FlexPointError, FlexPointRateLimited
from reliability.backoff import Backoff
from reliability.errors import Transient


@dataclass(frozen=True)
class FlexPointRetries:
    """Up to ``max_attempts`` attempts; full-jitter exponential backoff capped at ``cap`` seconds.

    A 429 waits the ``Retry-After`` FlexPoint asked for, unless that exceeds
    ``max_retry_after``: then the call gives up at once and the caller waits outside. A
    ``Retry-After: 0`` is no wait asked for, so the backoff decides (see ``reliability.retry_after``).
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
        return Backoff(self.base, self.cap).delay(attempt, rng)

    def delay(self, error: FlexPointError, attempt: int, rng: random.Random) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up and raise ``error``."""
        if not isinstance(error, Transient) or attempt >= self.max_attempts:
            return None
        if isinstance(error, FlexPointRateLimited) and error.retry_after:
            return error.retry_after if error.retry_after <= self.max_retry_after else None
        return self.backoff(attempt, rng)
