"""What a seeding run creates: counts (scaled from the number of invoices by default), seed, date range."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class SeedOptions:
    """How much to create. ``None`` counts scale with the number of invoices."""

    customers: int = 50
    invoices: int = 200
    lines_per_invoice: int | None = None  # None: 1 to 5 at random
    adjustments: int | None = None  # None: invoices / 20
    journal_entries: int | None = None  # None: invoices / 10, at least 5
    other_receipts: int | None = None  # None: invoices / 50, at least 2
    checking_accounts: int = 3
    entities: int = 2
    seed: int = 1
    as_of: int | None = None  # unix seconds the data is "as of"; None: now
    days: int = 365  # how far back documents go

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if (
                f.name != "as_of"
                and value is not None
                and (isinstance(value, bool) or not isinstance(value, int))
            ):
                raise ValueError(f"{f.name} must be a whole number")
            if f.name not in ("seed", "as_of") and value is not None and value < 0:
                raise ValueError(f"{f.name} cannot be negative")
        if self.lines_per_invoice is not None and not 1 <= self.lines_per_invoice <= 50:
            raise ValueError("lines_per_invoice must lie between 1 and 50")
        if self.days < 1:
            raise ValueError("days must be at least 1")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SeedOptions:
        """From the admin API's camelCase body; ValueError on unknown keys or bad values."""
        by_camel = {_camel(f.name): f.name for f in fields(cls)}
        unknown = set(data) - set(by_camel)
        if unknown:
            raise ValueError(f"unknown seed option(s): {', '.join(sorted(unknown))}")
        return cls(**{by_camel[k]: v for k, v in data.items()})

    def to_json(self) -> dict[str, Any]:
        """The options in the admin API's camelCase."""
        return {_camel(k): v for k, v in asdict(self).items()}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
