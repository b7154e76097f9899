"""Coalescing: events collect per (connection, resource) and leave as one group to fetch.

Repeated events for a hot record inside the window become one key; a group leaves when its
first event has waited ``window`` seconds or it holds ``max_keys`` distinct records, so one
batch GET and one FlexPoint batch serve many events.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.mappings.values import intacct_date_time, utc_timestamp

GroupKey = tuple[str, str]  # (connection id, resource)

# Processing a group of the key resource re-reads records of the value resource (a payment
# changes what its invoices owe). Events of that resource waiting for the same connection ride
# along with the group, so one read of those records serves both.
RIDERS: dict[str, str] = {"payments": "invoices"}


@dataclass
class Event:
    """One received message: its parsed envelope and what settling it needs."""

    envelope: dict[str, Any]
    message: Any  # the broker's message, acked or routed by the consumer thread only
    queue: str
    received: float
    recheck: bool = False  # this is the second look at a record that was changing when first read


@dataclass
class Group:
    """Events for records of one resource of one connection, processed together."""

    connection_id: str
    resource: str
    events: list[Event] = field(default_factory=list)
    opened: float = 0.0
    rider: Group | None = None  # events of RIDERS[resource], processed with this group

    @property
    def all_events(self) -> list[Event]:
        """This group's events and its rider's."""
        return self.events + (self.rider.events if self.rider is not None else [])

    @property
    def keys(self) -> list[str]:
        """Distinct record keys, in order of first appearance."""
        return list(dict.fromkeys(str(e.envelope["key"]) for e in self.events))

    def log_context(self) -> dict[str, Any]:
        """What the handler's log lines for this group are bound to."""
        return {
            "connection_id": self.connection_id,
            "resource": self.resource,
            "events": len(self.all_events),
        }

    def observed_at(self, key: str) -> datetime | None:
        """The latest ``occurredAt`` among the key's events (see :func:`deletion_version`)."""
        times = [
            t
            for e in self.events
            if str(e.envelope["key"]) == key
            and (t := deletion_version(e.envelope.get("occurredAt"), e.envelope.get("receivedAt")))
        ]
        return max(times) if times else None


def _moment(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(utc_timestamp(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def deletion_version(occurred_at: Any, received_at: Any) -> datetime | None:
    """The version of a deletion from an event's ``occurredAt``; never an error.

    RFC 3339 is taken as it is. Intacct's own date formats (what a merge field such as
    ``{!ARINVOICE.WHENMODIFIED!}`` renders) are read, but they are in the user's time zone,
    which they do not say: read as UTC they could fall hours before the deletion, and before
    the record's last version, so FlexPoint would keep the record. Such a time is therefore
    never placed before ``received_at`` (when the receiver saw the event, after the deletion).
    Anything else (ambiguous, unreadable) is the time observed, ``received_at``; None when
    there is neither, and the caller uses its own clock.
    """
    if occurred_at is None:
        return None
    exact = _moment(occurred_at)
    if exact is not None:
        return exact
    observed = _moment(received_at) if received_at is not None else None
    local = intacct_date_time(occurred_at)
    if local is None:
        return observed
    return local if observed is None else max(local, observed)


class Coalescer:
    """Holds open groups until they are old or big enough to go."""

    def __init__(
        self, *, window: float = 0.2, max_keys: int = 500, clock: Callable[[], float] = time.monotonic
    ):
        self._window = window
        self._max_keys = max_keys
        self._clock = clock
        self._open: dict[GroupKey, Group] = {}
        self._keys: dict[GroupKey, set[str]] = {}

    def add(self, event: Event) -> None:
        envelope = event.envelope
        group_key = (envelope["connectionId"], envelope["resource"])
        group = self._open.get(group_key)
        if group is None:
            group = self._open[group_key] = Group(group_key[0], group_key[1], opened=self._clock())
            self._keys[group_key] = set()
        group.events.append(event)
        self._keys[group_key].add(str(envelope["key"]))

    def ready(self, *, everything: bool = False, limit: int | None = None) -> list[Group]:
        """Groups to process now, oldest first, at most ``limit``, removed from the open set.

        A due group that does not fit under ``limit`` stays open and keeps collecting: while
        every worker is busy, events pile up into bigger groups instead of a queue of small ones.
        """
        now = self._clock()
        due = [
            key
            for key, group in self._open.items()
            if everything or now - group.opened >= self._window or len(self._keys[key]) >= self._max_keys
        ]
        due.sort(key=lambda key: self._open[key].opened)
        leaving = due if limit is None else due[: max(0, limit)]
        groups: dict[GroupKey, Group] = {}
        # Groups that take riders first, so a rider that is due as well leaves with its host.
        for key in sorted(leaving, key=lambda k: k[1] not in RIDERS):
            if key not in self._open:
                continue  # already left as another group's rider
            group = groups[key] = self._take(key)
            rider_key = (key[0], RIDERS.get(key[1], ""))
            if rider_key in self._open:
                group.rider = self._take(rider_key)
        return [groups[key] for key in leaving if key in groups]

    def _take(self, key: GroupKey) -> Group:
        del self._keys[key]
        return self._open.pop(key)

    def drop_all(self) -> int:
        """Forget every open group (their messages died with their channel); how many events."""
        count = sum(len(group.events) for group in self._open.values())
        self._open.clear()
        self._keys.clear()
        return count

    def __len__(self) -> int:
        return sum(len(group.events) for group in self._open.values())
