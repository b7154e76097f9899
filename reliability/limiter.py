"""What the Intacct client needs of the per-company concurrency cap, whoever keeps it.

The client depends on this protocol only; ``clients.intacct.slots.CompanySlots`` is the implementation
that holds the cap in the database, across every worker process.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from reliability.errors import Transient


class SlotTimeout(Transient, TimeoutError):
    """No slot of the company came free before the timeout; try again later."""

    reason = "slot_timeout"


class Slot(Protocol):
    """One held place under the cap, for the length of a ``with`` block."""

    def keep_until_expiry(self) -> None:
        """Leave the place taken after the block: it frees itself when its lease runs out."""
        ...

    def seconds_left(self) -> float:
        """How long the place's lease still runs (it may have been taken before this holder had it)."""
        ...


class CompanyLimiter(Protocol):
    """At most a cap of holders per company; a place is leased for ``lease_seconds`` at most."""

    lease_seconds: float

    def acquire(self, company_id: str, timeout: float = 30.0) -> AbstractContextManager[Slot]:
        """Hold a place for the block, or raise :class:`SlotTimeout` after ``timeout`` seconds."""
        ...
