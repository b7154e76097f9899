"""Waiting between attempts: exponential backoff with full jitter, and reading ``Retry-After``."""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime

# Third-party clients report Intacct also naming the hint X-IA-<something>-Retry-After.
_IA_RETRY_AFTER = re.compile(r"^x-ia-.*retry-after$", re.IGNORECASE)


def full_jitter(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """A delay drawn uniformly from 0 to ``min(cap, base * 2**(attempt - 1))`` (attempt counts from 1).

    Full jitter spreads simultaneous retries of many workers apart, so they do not collide again.
    """
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return rng.uniform(0.0, ceiling)


def retry_after(headers: Mapping[str, str], *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds the server asked us to wait (``Retry-After`` or ``X-IA-*-Retry-After``), or None.

    Both delta-seconds and an HTTP date are understood; zero, negative or unreadable hints count
    as no hint, so the caller backs off on its own instead of retrying at once.
    """
    values = [headers.get("Retry-After")]
    values += [value for name, value in headers.items() if _IA_RETRY_AFTER.match(name)]
    for value in values:
        seconds = _seconds(value, now)
        if seconds is not None and seconds > 0:
            return seconds
    return None


def _seconds(value: str | None, now: Callable[[], float]) -> float | None:
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) else None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return moment.timestamp() - now()
