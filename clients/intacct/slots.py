"""A distributed counting semaphore per company: the Intacct concurrency cap, held in the database.

Every worker process on every host shares one table of slots, ``cap`` rows per company. Taking
a slot is a compare-and-set ``UPDATE`` whose ``WHERE`` is the "is it free?" check itself, so no
two holders can win the same row on SQLite or PostgreSQL, whatever runs in between. A slot is
leased, not owned: a holder killed with SIGKILL never releases it, and its lease running out is
what frees it.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Engine, Table, func, select
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from observability.logging import get_logger
from reliability.backoff import Backoff
from reliability.leases import new_holder
from reliability.limiter import SlotTimeout
from store.db import conflict_insert, write_transaction
from store.leases import LeaseColumns
from store.models import IntacctSlot

log = get_logger(__name__)

# SQLAlchemy types __table__ as a FromClause; a declarative model's is always a Table.
_table = cast(Table, IntacctSlot.__table__)
_c = _table.c

__all__ = ["CompanySlots", "Lease", "SlotTimeout", "company_slots"]


@dataclass
class Lease:
    """A slot held until ``leased_until`` (unix seconds of the slots' clock)."""

    company_id: str
    slot: int
    holder: str
    leased_until: float
    kept: bool = False

    def keep_until_expiry(self) -> None:
        """Leave the slot taken when the ``with`` block ends; the lease running out frees it.

        For a request that timed out: Intacct may still be working on it, and counting it
        against the company's cap meanwhile is what keeps the next request from a 429.
        """
        self.kept = True


class _Releases:
    """One company's slots as this process uses them: how many of its threads are claiming or
    holding one, and the releases, so a waiter here can retry at once.

    At most ``cap`` threads of a process claim at once: the others wait here, without a query,
    until one of those leaves. Otherwise every thread waiting for a busy company polls the
    table: under a burst of one company's payments, all of a process's threads did, where only
    ``cap`` of them could ever use what they found. A count of releases rather than a bare
    notify: a release that lands between a waiter's failed claim and its wait is still seen,
    instead of costing that waiter a whole poll interval.
    """

    def __init__(self, cap: int) -> None:
        self._changed = threading.Condition()
        self._count = 0
        self._cap = cap
        self._claiming = 0  # threads of this process claiming or holding a slot

    def seen(self) -> int:
        with self._changed:
            return self._count

    def enter(self) -> bool:
        """Take one of the process's ``cap`` turns to claim; False when all are taken."""
        with self._changed:
            if self._claiming >= self._cap:
                return False
            self._claiming += 1
            return True

    def leave(self, *, released: bool) -> None:
        """Give the turn back; wake a waiter only when a slot was ``released``.

        A failed claim wakes no one: the slots are as busy as they were, and a waiter woken to
        claim again at once would only fail too, passing the wake-up on in a loop of claims.
        """
        with self._changed:
            self._claiming -= 1
            if released:
                self._count += 1
                self._changed.notify()

    def wait(self, seen: int, seconds: float) -> None:
        with self._changed:
            if self._count == seen:
                self._changed.wait(seconds)


class CompanySlots:
    """At most ``cap`` holders per company at once, across threads, processes and hosts.

    ``lease_seconds`` must exceed the longest time a holder keeps its slot, i.e. the Intacct
    client's longest request (connect timeout + read timeout): a lease that runs out while its
    request is still running lets one more request in. The default, 45 s, covers the client's
    5 s + 30 s. Hosts' clocks must agree to well within the lease (NTP does).

    Waiting polls the table every 5 ms at first, growing to 100 ms, with jitter (``poll``); a
    release in this process also wakes a waiter of this process at once. ``sleep`` replaces that
    waiting in tests (with ``clock``, so no real time passes).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        cap: int,
        lease_seconds: float = 45.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] | None = None,
        poll: tuple[float, float] = (0.005, 0.1),
        rng: random.Random | None = None,
    ) -> None:
        if cap < 1:
            raise ValueError("cap must be at least 1")
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        self._engine = engine
        self.cap = cap
        self.lease_seconds = lease_seconds
        self._clock = clock
        self._sleep = sleep
        # Equal jitter: a poller never spins, and pollers in many processes do not keep step.
        self._poll = Backoff(poll[0], poll[1], floor=0.5)
        self._leases = LeaseColumns(_table, clock=clock)
        self._rng = rng or random.Random()
        self._insert = conflict_insert(engine)
        self._ensured: set[str] = set()
        self._releases: dict[str, _Releases] = {}
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def acquire(self, company_id: str, timeout: float = 30.0) -> Iterator[Lease]:
        """Hold one of the company's slots for the ``with`` block; :class:`SlotTimeout` after ``timeout`` s."""
        lease = self._wait_for_slot(company_id, timeout)
        try:
            yield lease
        finally:
            self._release(lease)

    def holders(self, company_id: str) -> int:
        """How many of the company's slots are held right now (leases not yet run out)."""
        with self._engine.connect() as conn:
            return conn.execute(
                select(func.count())
                .select_from(_table)
                .where(_c.company_id == company_id, self._leases.live(self._clock()))
            ).scalar_one()

    # -- internals ----------------------------------------------------------------------------

    def _wait_for_slot(self, company_id: str, timeout: float) -> Lease:
        deadline = self._clock() + timeout
        releases = self._releases_of(company_id)
        polls = 0
        trouble: OperationalError | None = None
        while True:
            seen = releases.seen()
            lease = None
            if releases.enter():
                try:
                    self._ensure_rows(company_id)
                    lease = self._try_claim(company_id)
                except OperationalError as exc:
                    # SQLite busy past its timeout, a dropped connection: try again at the next
                    # poll, and say so if it lasts until the deadline.
                    trouble = exc
                finally:
                    if lease is None:
                        releases.leave(released=False)
            if lease is not None:
                return lease  # its turn is given back with the slot (_release)
            remaining = deadline - self._clock()
            if remaining <= 0:
                cause = f" (last database error: {type(trouble).__name__})" if trouble else ""
                raise SlotTimeout(
                    f"all {self.cap} Intacct slots of company {company_id} stayed busy for {timeout:g} s{cause}"
                ) from trouble
            delay = min(remaining, self._poll.delay(polls + 1, self._rng))
            if self._sleep is not None:
                self._sleep(delay)
            else:
                releases.wait(seen, delay)
            polls += 1

    def _try_claim(self, company_id: str) -> Lease | None:
        lease = self._claim_free(company_id)
        if lease is None and self._reclaim_dead_local_holders(company_id):
            lease = self._claim_free(company_id)
        return lease

    def _reclaim_dead_local_holders(self, company_id: str) -> bool:
        """Free slots whose holder died on this node: no need to wait out its lease.

        A holder on another host (or in another PID namespace) cannot be checked, so its slot
        waits for the lease, as before.
        """
        key = {"company_id": company_id}
        with self._engine.connect() as conn:
            dead = self._leases.dead_holders(conn, key)
        freed = False
        for holder in dead:
            with write_transaction(self._engine) as conn:
                freed |= self._leases.release(conn, key, holder)
            log.info("intacct_slot_reclaimed", company_id=company_id, reason="holder_process_gone")
        return freed

    def _claim_free(self, company_id: str) -> Lease | None:
        now = self._clock()
        free = self._leases.free(now)
        with self._engine.connect() as conn:
            candidates = list(
                conn.execute(
                    select(_c.slot).where(_c.company_id == company_id, _c.slot < self.cap, free)
                ).scalars()
            )
        # Trying the free slots in random order keeps simultaneous claimants off one row.
        self._rng.shuffle(candidates)
        for slot in candidates:
            # Unique per acquisition, so a late release can never free a slot someone else took since.
            holder = new_holder()
            with write_transaction(self._engine) as conn:
                # The WHERE repeats the "free" check: the row is taken only if still free now
                # (PostgreSQL re-checks it after a concurrent update; SQLite writes one at a time).
                claimed = self._leases.claim(
                    conn, {"company_id": company_id, "slot": slot}, holder, self.lease_seconds, free=free
                )
            if claimed:
                return Lease(company_id, slot, holder, now + self.lease_seconds)
        return None

    def _release(self, lease: Lease) -> None:
        freed = False
        try:
            freed = self._release_row(lease)
        finally:
            self._releases_of(lease.company_id).leave(released=freed)

    def _release_row(self, lease: Lease) -> bool:
        """Free the lease's row (unless it is kept); True when it was freed."""
        if lease.kept:
            return False
        try:
            with write_transaction(self._engine) as conn:
                # Only if still ours: after the lease ran out someone else may hold the slot.
                self._leases.release(conn, {"company_id": lease.company_id, "slot": lease.slot}, lease.holder)
        except SQLAlchemyError as exc:
            # The request itself is done; the slot frees itself when the lease runs out.
            log.warning(
                "intacct_slot_release_failed",
                company_id=lease.company_id,
                slot=lease.slot,
                error=type(exc).__name__,
            )
            return False
        return True

    def _ensure_rows(self, company_id: str) -> None:
        if company_id in self._ensured:
            return
        rows = [{"company_id": company_id, "slot": slot} for slot in range(self.cap)]
        with write_transaction(self._engine) as conn:
            conn.execute(self._insert(_table).values(rows).on_conflict_do_nothing())
        with self._guard:
            self._ensured.add(company_id)

    def _releases_of(self, company_id: str) -> _Releases:
        with self._guard:
            return self._releases.setdefault(company_id, _Releases(self.cap))


def company_slots(settings: Any, engine: Engine, *, lease_seconds: float | None = None) -> CompanySlots:
    """The Intacct cap of ``INTACCT_MAX_CONCURRENCY_PER_COMPANY`` per company, kept in ``engine``;
    ``lease_seconds`` (when given) must outlast the longest request made under a slot."""
    if lease_seconds is None:
        return CompanySlots(engine, cap=settings.intacct_max_concurrency_per_company)
    return CompanySlots(engine, cap=settings.intacct_max_concurrency_per_company, lease_seconds=lease_seconds)
