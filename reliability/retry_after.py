"""One reading of ``Retry-After`` (RFC 9110 §10.2.3): delta-seconds or an HTTP date.

``Retry-After: 0`` (or a date already past) reads as 0.0: the server asked for no wait. A
retrying client treats a hint of 0 like no hint and backs off on its own (:func:`hint`), since
coming back at once after a 429 only asks for another. Negative, infinite, NaN or unreadable
values read as None.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime

# Third-party clients report Intacct also naming the hint X-IA-<something>-Retry-After.
_IA_RETRY_AFTER = re.compile(r"^x-ia-.*retry-after$", re.IGNORECASE)


def parse_retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from one header value (``now``: unix seconds), or None when unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            # An HTTP date is GMT by definition, whatever zone (or none) it spells.
            moment = moment.replace(tzinfo=UTC)
        # A date already past means "now".
        return max(0.0, moment.timestamp() - now())
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def hint(headers: Mapping[str, str], *, now: Callable[[], float] = time.time) -> float | None:
    """The first positive wait among ``Retry-After`` and ``X-IA-*-Retry-After``, or None."""
    values = [headers.get("Retry-After")]
    values += [value for name, value in headers.items() if _IA_RETRY_AFTER.match(name)]
    for value in values:
        seconds = parse_retry_after(value, now=now)
        if seconds:
            return seconds
    return None
