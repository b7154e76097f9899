"""Injected faults: latency per call, a rate of 5xx answers, a rate of timeouts, and for writes
a rate of "committed, then failed" answers (``commitErrorRate``: a 500 after the write,
``commitTimeoutRate``: the answer held past any client's timeout, then a 504).

One random draw per call from a seedable RNG, so a seeded run injects the same faults in the
same order. Holds (latency, timeouts) wait on an event that any settings change sets, so
turning a fault off releases the requests it is holding at once.
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, replace
from typing import Any

_CAMEL = {
    "latency_ms": "latencyMs",
    "error_rate": "errorRate",
    "error_status": "errorStatus",
    "timeout_rate": "timeoutRate",
    "timeout_hold_seconds": "timeoutHoldSeconds",
    "commit_error_rate": "commitErrorRate",
    "commit_timeout_rate": "commitTimeoutRate",
    "seed": "seed",
}


@dataclass(frozen=True)
class FaultSettings:
    """Injected faults; rates are shares of calls (0 to 1), drawn once per call."""

    latency_ms: float = 0.0
    error_rate: float = 0.0
    error_status: int = 503
    timeout_rate: float = 0.0
    timeout_hold_seconds: float = 30.0
    commit_error_rate: float = 0.0
    commit_timeout_rate: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("error_rate", "timeout_rate", "commit_error_rate", "commit_timeout_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{_CAMEL[name]} must lie between 0 and 1")
        if self.error_rate + self.timeout_rate > 1.0:
            raise ValueError("errorRate + timeoutRate cannot exceed 1")
        if self.commit_error_rate + self.commit_timeout_rate > 1.0:
            raise ValueError("commitErrorRate + commitTimeoutRate cannot exceed 1")
        if not 500 <= self.error_status <= 599:
            raise ValueError("errorStatus must be a 5xx status")
        if self.latency_ms < 0 or self.timeout_hold_seconds < 0:
            raise ValueError("latencyMs and timeoutHoldSeconds cannot be negative")

    def to_json(self) -> dict[str, Any]:
        return {_CAMEL[k]: v for k, v in asdict(self).items()}

    def merged(self, data: dict[str, Any]) -> FaultSettings:
        """A copy with camelCase settings changed; ValueError for unknown or invalid ones."""
        by_camel = {camel: name for name, camel in _CAMEL.items()}
        unknown = set(data) - set(by_camel)
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(sorted(unknown))}")
        changes = {}
        for camel, value in data.items():
            name = by_camel[camel]
            if name == "seed":
                if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                    raise ValueError("seed must be a whole number or null")
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{camel} must be a number")
            changes[name] = int(value) if name == "error_status" else value
        return replace(self, **changes)


@dataclass(frozen=True)
class Decision:
    """What happens to one call: a delay, then maybe a timeout (504) or an error status."""

    latency_seconds: float
    outcome: str | None  # None, "error" or "timeout"
    error_status: int
    hold_seconds: float


class FaultInjector:
    """Holds the current :class:`FaultSettings` and decides, per call, which fault applies."""

    def __init__(self, settings: FaultSettings) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._settings = settings
        self._rng = random.Random(settings.seed)

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    def configure(self, settings: FaultSettings) -> None:
        """Replace the settings (re-seeding the RNG) and release every request being held."""
        with self._lock:
            self._settings = settings
            self._rng = random.Random(settings.seed)
            wake, self._wake = self._wake, threading.Event()
        wake.set()

    def decide(self) -> Decision:
        """Draw this call's fault (one RNG draw whenever a rate is set)."""
        with self._lock:
            settings = self._settings
            outcome = None
            if settings.error_rate or settings.timeout_rate:
                draw = self._rng.random()
                if draw < settings.timeout_rate:
                    outcome = "timeout"
                elif draw < settings.timeout_rate + settings.error_rate:
                    outcome = "error"
        return Decision(
            settings.latency_ms / 1000.0, outcome, settings.error_status, settings.timeout_hold_seconds
        )

    def decide_after_commit(self, company_rates: dict[str, float] | None = None) -> str | None:
        """After a committed write: None, "error" or "timeout"; a company's own rates win."""
        with self._lock:
            settings = self._settings
            if company_rates is None:
                company_rates = {
                    "commitErrorRate": settings.commit_error_rate,
                    "commitTimeoutRate": settings.commit_timeout_rate,
                }
            timeout_rate = company_rates.get("commitTimeoutRate", 0.0)
            error_rate = company_rates.get("commitErrorRate", 0.0)
            if not (timeout_rate or error_rate):
                return None
            draw = self._rng.random()
        if draw < timeout_rate:
            return "timeout"
        return "error" if draw < timeout_rate + error_rate else None

    def hold(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the settings change meanwhile."""
        if seconds > 0:
            self._wake.wait(seconds)
