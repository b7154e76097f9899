"""Injected latency and failures, decided before a request touches anything.

Determinism, so chaos tests can predict exactly which requests fail: with a seed, every Sync
API request that passed authentication draws exactly two numbers ``u, v`` from
``random.Random(seed)``, in arrival order:

- ``u < server_error_rate`` → 5xx: 500 when ``v < 0.5``, else 503;
- else ``u < server_error_rate + rate_limit_rate`` → 429 with ``Retry-After``;
- else the request is served.

Scripted statuses (``script``) are answered first, one per request, without drawing, so a
test can also say "fail the next two requests with 503". Changing the settings with a
``seed`` restarts the sequence. Concurrent requests get the draws in the order they take
the lock; the sequence of outcomes is still the seeded one.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sandbox.flexpoint.config import FlexPointConfig

SCRIPTABLE = (429, 500, 502, 503, 504)


@dataclass(frozen=True)
class FaultSettings:
    """What the injector does to each Sync API request."""

    latency_ms: int = 0
    server_error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after_seconds: int = 1
    seed: int | None = None
    script: tuple[int, ...] = field(default=())

    @classmethod
    def from_config(cls, config: FlexPointConfig) -> FaultSettings:
        return cls(
            config.latency_ms,
            config.server_error_rate,
            config.rate_limit_rate,
            config.retry_after_seconds,
            config.seed,
        )

    def to_json(self) -> dict[str, Any]:
        """The settings as ``/sandbox/faults`` shows them (camelCase, like the Sync API)."""
        return {
            _CAMEL[name]: (list(value) if name == "script" else value) for name, value in asdict(self).items()
        }


_CAMEL = {
    "latency_ms": "latencyMs",
    "server_error_rate": "serverErrorRate",
    "rate_limit_rate": "rateLimitRate",
    "retry_after_seconds": "retryAfterSeconds",
    "seed": "seed",
    "script": "script",
}
_FIELDS = {camel: name for name, camel in _CAMEL.items()}


def parse_settings(current: FaultSettings, body: Any) -> FaultSettings:
    """Merge a ``/sandbox/faults`` body over the current settings; ValueError names a bad field.

    Absent fields keep their value, so ``{"latencyMs": 20}`` changes only the latency.
    """
    if not isinstance(body, Mapping):
        raise ValueError("body must be a JSON object")
    changes: dict[str, Any] = {}
    for key, value in body.items():
        name = _FIELDS.get(key)
        if name is None:
            raise ValueError(f"{key}: unknown setting (known: {', '.join(_FIELDS)})")
        if name in ("server_error_rate", "rate_limit_rate"):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"{key}: must be a number within 0..1")
            value = float(value)
        elif name in ("latency_ms", "retry_after_seconds"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{key}: must be a non-negative integer")
        elif name == "seed":
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{key}: must be an integer or null")
        elif name == "script":
            if not isinstance(value, list) or any(v not in SCRIPTABLE for v in value):
                raise ValueError(f"{key}: must be a list of statuses among {SCRIPTABLE}")
            value = tuple(value)
        changes[name] = value
    merged = replace(current, **changes)
    if merged.server_error_rate + merged.rate_limit_rate > 1:
        raise ValueError("serverErrorRate + rateLimitRate exceeds 1")
    return merged


@dataclass(frozen=True)
class Decision:
    """What to do to one request: wait ``delay`` seconds, then fail with ``status`` (if set)."""

    delay: float
    status: int | None
    retry_after: int | None


class FaultInjector:
    """Holds the fault settings and the seeded RNG; thread-safe."""

    def __init__(self, settings: FaultSettings, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self._lock = threading.Lock()
        self._sleep = sleep
        self._counts: Counter[str] = Counter()
        self._settings = settings
        self._rng = random.Random(settings.seed)
        self._script = list(settings.script)

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    def configure(self, settings: FaultSettings, *, reseed: bool) -> None:
        """Replace the settings; ``reseed`` restarts the RNG from ``settings.seed``."""
        with self._lock:
            if reseed:
                self._rng = random.Random(settings.seed)
            self._script = list(settings.script)
            self._settings = settings

    def decide(self) -> Decision:
        """Draw the fate of the next request (before anything is read or written)."""
        with self._lock:
            settings = self._settings
            self._counts["requests"] += 1
            status: int | None = None
            if self._script:
                status = self._script.pop(0)
                # The script is consumed: show what is left.
                self._settings = replace(settings, script=tuple(self._script))
            else:
                u, v = self._rng.random(), self._rng.random()
                if u < settings.server_error_rate:
                    status = 500 if v < 0.5 else 503
                elif u < settings.server_error_rate + settings.rate_limit_rate:
                    status = 429
            if status is not None:
                self._counts[str(status)] += 1
        retry_after = settings.retry_after_seconds if status == 429 else None
        return Decision(settings.latency_ms / 1000.0, status, retry_after)

    def wait(self, decision: Decision) -> None:
        """Apply the decision's latency (outside the lock, so requests wait in parallel)."""
        if decision.delay > 0:
            self._sleep(decision.delay)

    def stats(self) -> dict[str, Any]:
        """Requests seen and faults injected, by status."""
        with self._lock:
            counts = dict(self._counts)
        return {"requests": counts.pop("requests", 0), "injected": counts}

    def reset_stats(self) -> None:
        with self._lock:
            self._counts.clear()
