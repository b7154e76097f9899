"""One backoff policy: exponential growth from ``base``, capped at ``cap``, drawn with jitter.

Full jitter (a draw from 0 to the ceiling) spreads the retries of many workers apart so they do
not collide again; ``floor`` raises the bottom of the draw for pollers that must not spin.
tenacity's waits are not used: they draw from the module-level ``random`` (tests could not
replay them) and its retry loop cannot sleep outside the Intacct slot or renew a token between
attempts, so the callers keep their loops and share this policy.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backoff:
    """Attempt ``n`` (from 1) waits up to ``min(cap, base * 2**(n - 1))`` seconds."""

    base: float
    cap: float
    # The draw's lower end as a fraction of the ceiling: 0 is full jitter, 0.5 "equal jitter".
    floor: float = 0.0

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            raise ValueError("backoff needs 0 < base <= cap")
        if not 0.0 <= self.floor <= 1.0:
            raise ValueError("floor is a fraction of the ceiling, from 0 to 1")

    def ceiling(self, attempt: int) -> float:
        """The longest wait before attempt ``attempt + 1``."""
        return min(self.cap, self.base * (2 ** max(0, attempt - 1)))

    def delay(self, attempt: int, rng: random.Random) -> float:
        """A wait drawn uniformly between ``floor * ceiling`` and the ceiling."""
        ceiling = self.ceiling(attempt)
        return rng.uniform(ceiling * self.floor, ceiling)


@dataclass
class Pacer:
    """A backoff with its clock, sleep and random source injected: tests replay it in no time."""

    backoff: Backoff
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)

    def pause(self, attempt: int, *, deadline: float | None = None) -> float:
        """Sleep the backoff of ``attempt`` (never past ``deadline`` on the clock); the seconds slept."""
        delay = self.backoff.delay(attempt, self.rng)
        if deadline is not None:
            delay = max(0.0, min(delay, deadline - self.clock()))
        self.sleep(delay)
        return delay
