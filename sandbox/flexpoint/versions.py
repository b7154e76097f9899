"""sourceVersion as an instant, and the last-writer-wins rule of the Sync API.

The contract compares sourceVersions "as instants": ``2026-11-24T10:00:00Z`` and
``2026-11-24T11:00:00+01:00`` are the same version. Every timestamp is therefore reduced to
a fixed-width UTC text (nanosecond precision) whose string order is time order, so the store
compares versions as plain strings and SQLite never has to parse dates.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from enum import StrEnum

# RFC 3339 section 5.6, ASCII digits only (Python's \d would also take other scripts' digits).
# Lower-case t/z are allowed by the RFC's note on case.
_TIMESTAMP = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt](?P<h>[0-9]{2}):(?P<m>[0-9]{2}):(?P<s>[0-9]{2})"
    r"(?:\.(?P<frac>[0-9]+))?(?P<tz>[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class TimestampError(ValueError):
    """Not an RFC 3339 date-time; the message says what is wrong with it."""


@dataclass(frozen=True, order=True)
class Version:
    """A sourceVersion reduced to UTC: ``key`` sorts in time order, ``text`` is for display."""

    key: str
    text: str


def parse_date(value: str) -> date:
    """Parse a contract Date (``YYYY-MM-DD``, a real calendar day) or raise ValueError."""
    if not _DATE.fullmatch(value):
        raise ValueError("expected YYYY-MM-DD")
    return date.fromisoformat(value)


@functools.lru_cache(maxsize=4096)
def parse_timestamp(value: str) -> Version:
    """Parse an RFC 3339 date-time with any offset into its UTC :class:`Version`.

    Leap seconds (``:60``) are refused: nothing FlexPoint is sent can carry one, and they
    have no instant of their own to compare. Cached: a batch's items often share a version,
    and the format check and the store parse the same text.
    """
    match = _TIMESTAMP.fullmatch(value)
    if match is None:
        raise TimestampError("expected an RFC 3339 date-time such as 2026-11-24T10:00:00Z")
    try:
        day = date.fromisoformat(match["date"])
        tz = match["tz"].upper()
        if tz == "Z":
            offset = timedelta(0)
        else:
            hours, minutes = int(tz[1:3]), int(tz[4:6])
            if hours > 23 or minutes > 59:
                raise ValueError("offset out of range")
            offset = timedelta(hours=hours, minutes=minutes) * (1 if tz[0] == "+" else -1)
        local = datetime(
            day.year,
            day.month,
            day.day,
            int(match["h"]),
            int(match["m"]),
            int(match["s"]),
            tzinfo=timezone(offset),
        )
        utc = local.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise TimestampError(f"not a valid date-time ({exc})") from None
    # Digits beyond nanoseconds cannot change an order that Intacct's clock could produce.
    nanos = (match["frac"] or "").ljust(9, "0")[:9]
    key = f"{utc:%Y-%m-%dT%H:%M:%S}.{nanos}Z"
    fraction = nanos.rstrip("0")
    text = f"{utc:%Y-%m-%dT%H:%M:%S}{'.' + fraction if fraction else ''}Z"
    return Version(key=key, text=text)


class Outcome(StrEnum):
    """The per-item statuses of BatchResponse."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    STALE = "stale"
    DELETED = "deleted"


@dataclass(frozen=True)
class State:
    """What is stored (or about to be) for one externalId."""

    version_key: str
    deleted: bool
    data: str | None  # canonical JSON text; None for a tombstone


def decide(stored: State | None, incoming: State) -> Outcome:
    """The contract's last-writer-wins rule for one item against the stored state.

    Beyond the YAML's words (decided here, see the report of issue 3): on *equal* versions a
    delete wins, so an equal-version upsert does not revive a tombstone (the YAML revives only
    on a newer version, and Intacct never modifies a record after deleting it), while an
    equal-version delete of a live record is applied. Reviving a tombstone reports ``updated``:
    the key is not new to the store.
    """
    if stored is None:
        return Outcome.DELETED if incoming.deleted else Outcome.CREATED
    if incoming.version_key < stored.version_key:
        return Outcome.STALE
    if incoming.version_key == stored.version_key:
        if incoming.deleted:
            return Outcome.UNCHANGED if stored.deleted else Outcome.DELETED
        if stored.deleted:
            return Outcome.STALE
        return Outcome.UNCHANGED if incoming.data == stored.data else Outcome.UPDATED
    return Outcome.DELETED if incoming.deleted else Outcome.UPDATED


def changes_state(outcome: Outcome) -> bool:
    """Whether an outcome writes to the store."""
    return outcome not in (Outcome.UNCHANGED, Outcome.STALE)
