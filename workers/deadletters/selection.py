"""Which messages an operation applies to: the filters shared by list, replay and purge."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from reliability.errors import OpsError
from workers.deadletters.letters import DeadLetter, parse_instant
from workers.deadletters.store import reason_spellings

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_moment(value: str | None, *, now: datetime | None = None) -> datetime | None:
    """An ISO-8601 time (UTC when no zone is given) or an age such as ``90m``, ``2h``, ``7d``."""
    if value is None or value == "":
        return None
    raw = value.strip()
    if raw[:-1].isdigit() and raw[-1:].lower() in _UNITS:
        return (now or datetime.now(UTC)) - timedelta(seconds=int(raw[:-1]) * _UNITS[raw[-1].lower()])
    moment = parse_instant(raw)
    if moment is None:
        raise OpsError(
            f"cannot read the time {value!r}: give an ISO-8601 time such as 2026-11-24T10:00:00Z "
            "or an age such as 30m, 2h, 7d"
        )
    return moment


@dataclass(frozen=True)
class Selection:
    """Filters; every one that is set must match. ``limit`` caps how many are selected."""

    connection: str | None = None
    resource: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = None
    ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 0:
            raise OpsError("--limit must be 0 or more")
        if self.since and self.until and self.since >= self.until:
            raise OpsError("--since must be before --until")

    def capped(self, count: int) -> int:
        """``count``, or the limit if it is lower: how many of ``count`` matches are selected."""
        return count if self.limit is None else min(count, self.limit)

    def full(self, selected: int) -> bool:
        """Whether ``selected`` letters or events already reach the limit."""
        return self.limit is not None and selected >= self.limit

    def in_range(self, moment: datetime | None) -> bool:
        """Whether a time is within [since, until); an unknown time matches only open ranges."""
        if self.since is None and self.until is None:
            return True
        if moment is None:
            return False
        return (self.since is None or moment >= self.since) and (self.until is None or moment < self.until)

    def matches_event(self, connection: str | None, resource: str | None, moment: datetime | None) -> bool:
        return (
            (self.connection is None or connection == self.connection)
            and (self.resource is None or resource == self.resource)
            and self.in_range(moment)
        )

    def matches(self, letter: DeadLetter) -> bool:
        """Whether a dead letter is selected (``--reason x`` also matches ``x:attempts_exhausted``,
        and a FlexPoint reason its old spelling, ``flex_point_*``)."""
        if self.ids and not any(letter.id.startswith(prefix) for prefix in self.ids):
            return False
        if self.reason is not None:
            spellings = reason_spellings(self.reason)
            if letter.reason not in spellings and letter.reason.split(":", 1)[0] not in spellings:
                return False
        return self.matches_event(letter.connection_id, letter.resource, letter.failed_at)

    def describe(self) -> str:
        parts = [
            f"{name}={value}"
            for name, value in (
                ("connection", self.connection),
                ("resource", self.resource),
                ("reason", self.reason),
                ("since", self.since.isoformat() if self.since else None),
                ("until", self.until.isoformat() if self.until else None),
                ("limit", self.limit),
                ("id", ",".join(self.ids) or None),
            )
            if value is not None
        ]
        return " ".join(parts) or "everything"
