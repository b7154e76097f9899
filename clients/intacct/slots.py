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
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, cast

from sqlalchemy import Engine, Table, bindparam, func, select
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from observability.logging import get_logger
from reliability.backoff import Backoff
from reliability.leases import holder_is_dead, new_holder
from reliability.limiter import SlotTimeout
from store.db import conflict_insert, write_transaction
from store.leases import LeaseColumns
from store.models import IntacctSlot

log = get_logger(__name__)

# SQLAlchemy types __table__ as a FromClause; a declarative model's is always a Table.
_table = cast(Table, IntacctSlot.__table__)
_c = _table.c

# A company's slots as one poll reads them; the claim follows from what it finds.
_SLOTS = select(_c.slot, _c.holder, _c.leased_until).where(
    _c.company_id == bindparam("key__company_id"), _c.slot < bindparam("cap")
)

# Several companies' slots at one look (the scout's): built once, the companies bound each time.
_SLOTS_OF = select(_c.company_id, _c.slot, _c.holder, _c.leased_until).where(
    _c.company_id.in_(bindparam("companies", expanding=True)), _c.slot < bindparam("cap")
)

__all__ = ["CompanySlots", "Lease", "SlotTimeout", "company_slots"]


@dataclass
class Lease:
    """A slot held until ``leased_until`` (unix seconds of the slots' clock)."""

    company_id: str
    slot: int
    holder: str
    leased_until: float
    kept: bool = False
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)
    borrowed: bool = False  # claimed beyond the process's share: handed over only while the borrowing lasts

    def seconds_left(self) -> float:
        """How long the lease still runs: it may be older than this holder's turn (handed over)."""
        return self.leased_until - self.clock()

    def keep_until_expiry(self) -> None:
        """Leave the slot taken when the ``with`` block ends; the lease running out frees it.

        For a request that timed out: Intacct may still be working on it, and counting it
        against the company's cap meanwhile is what keeps the next request from a 429.
        """
        self.kept = True


class _Turns:
    """One company's slots as this process uses them: at most ``cap`` of its threads claim or hold
    one at once (each holding a turn), and a count of the releases, so a poller here retries at once.

    A holder done with its slot may hand it, with its turn, straight to a thread waiting for a
    turn (:meth:`hand_over`): the row stays taken and nothing is written or read.

    A thread without a turn waits here, without a query and without waking up, until a turn is
    given back: otherwise every thread waiting for a busy company polls the table, where only
    ``cap`` of them could ever use what they found (under a burst of one company's payments all
    of a process's threads did). While the process's share is below the company's ``slots``, a
    slot seen free in the table is *offered* (:meth:`offer`): a thread waiting for a turn wakes
    and may claim it beyond the share (a borrowed turn, :meth:`borrowed`). A thread keeps its
    turn while it polls for a slot and while it holds one. Of the threads with a turn and no slot, one polls the table; the others wait here
    until it has one (it may not be the last free one). A count of releases rather than a bare
    notify: a release that lands between a poller's failed claim and its wait is still seen,
    instead of costing it a whole poll interval.
    """

    def __init__(self, cap: int, slots: int) -> None:
        lock = threading.Lock()
        self._turn_given_back = threading.Condition(lock)
        self._slot_released = threading.Condition(lock)
        self._released = 0
        self._cap = cap
        self._taken = 0  # turns held: threads of this process polling for a slot or holding one
        self.waiting = 0  # threads of this process waiting for a turn
        self._polling = False  # a thread of this process is polling the table for the company
        # Slots handed over and not yet taken; never more than threads waiting for a turn, and
        # each of those takes one, if any is left, whenever it stops waiting.
        self._handed: deque[Lease] = deque()
        self._slots = slots  # the company's: what all processes together may hold
        self._offers = 0  # slots seen free in the table, each for one thread waiting for a turn
        # Until when (the slots' clock) a slot this process gives back while it holds a borrowed
        # one is offered straight to its own next thread: a borrowing lasts that long.
        self.lend_until = 0.0

    def seen(self) -> int:
        with self._slot_released:
            return self._released

    def lends(self) -> bool:
        """Whether this process's share is below the company's slots, so it may borrow."""
        return self._cap < self._slots

    def limit(self, cap: int) -> None:
        """Allow ``cap`` turns from now on; threads waiting for one look again if it grew."""
        with self._turn_given_back:
            grew = cap > self._cap
            self._cap = cap
            if grew:
                self._turn_given_back.notify_all()

    def enter(self) -> bool:
        """Take one of the process's ``cap`` turns; False when all are taken."""
        with self._turn_given_back:
            if self._taken >= self._cap:
                return False
            self._taken += 1
            return True

    def wait_for_turn(self, seconds: float) -> Lease | None:
        """Wait until a turn may be free (or ``seconds`` passed, or a free slot is offered): a slot
        handed over with its turn, or None, and the caller tries :meth:`take_offer`, then
        :meth:`enter` again."""
        with self._turn_given_back:
            if self._taken >= self._cap and not self._handed and not self._offers:
                self.waiting += 1
                try:
                    self._turn_given_back.wait(seconds)
                finally:
                    self.waiting -= 1
            return self._handed.popleft() if self._handed else None

    def wanted(self) -> bool:
        """Whether a thread waits for a turn while the process's share is all taken."""
        with self._turn_given_back:
            return self.waiting > len(self._handed) and self._taken >= self._cap

    def offer(self, free: int) -> None:
        """``free`` of the company's slots were seen free in the table: as many threads waiting for
        a turn (no more) may each try to claim one beyond the share."""
        with self._turn_given_back:
            offers = min(free, self.waiting - len(self._handed))
            if offers > self._offers:
                self._offers = offers
                self._turn_given_back.notify(offers)

    def take_offer(self) -> bool:
        """Take one offered slot, to try to claim it (False: none offered)."""
        with self._turn_given_back:
            if not self._offers:
                return False
            self._offers -= 1
            return True

    def borrowed(self) -> None:
        """A thread claimed a slot beyond the share: it holds a turn the share does not count."""
        with self._turn_given_back:
            self._taken += 1

    def beyond_share(self) -> int:
        """How many turns are held beyond the share (borrowed slots)."""
        with self._turn_given_back:
            return max(0, self._taken - self._cap)

    def hand_over(self, lease: Lease, *, borrowing: bool = False) -> bool:
        """Give a held slot and this thread's turn to a thread waiting for a turn; False when no
        thread waits for one (or the share shrank below the turns taken, unless ``borrowing``: a
        borrowed turn is held), and nothing changed."""
        with self._turn_given_back:
            if self.waiting <= len(self._handed) or (self._taken > self._cap and not borrowing):
                return False
            self._handed.append(lease)
            self._turn_given_back.notify()
            return True

    def leave(self, *, released: bool, borrowing: bool = False) -> None:
        """Give the turn back (a thread waiting for one takes it); ``released``: with a slot, so the
        pollers of this process try again at once, and, ``borrowing`` while the share is still all
        taken (a borrowed turn is held), the next thread waiting for a turn may claim that slot."""
        with self._turn_given_back:
            self._taken -= 1
            if released and borrowing and self._taken >= self._cap:
                self._offers = min(self._offers + 1, self._slots)
            self._turn_given_back.notify()
            if released:
                self._released += 1
                self._slot_released.notify_all()

    def wait(self, seen: int, seconds: float) -> None:
        """A poller's wait: ``seconds``, or until a slot is released here after ``seen``."""
        with self._slot_released:
            if self._released == seen:
                self._slot_released.wait(seconds)

    def start_polling(self) -> bool:
        """Become the thread of this process that polls the table; False while another one is."""
        with self._slot_released:
            if self._polling:
                return False
            self._polling = True
            return True

    def stop_polling(self) -> None:
        """End this thread's polling (it has a slot, or gives up): a thread waiting to poll takes over."""
        with self._slot_released:
            self._polling = False
            self._slot_released.notify_all()

    def wait_to_poll(self, seconds: float) -> None:
        """Wait while another thread polls (or ``seconds``); the caller tries :meth:`start_polling` again."""
        with self._slot_released:
            if self._polling:
                self._slot_released.wait(seconds)


class CompanySlots:
    """At most ``cap`` holders per company at once, across threads, processes and hosts.

    ``lease_seconds`` must exceed the longest time a holder keeps its slot, i.e. the Intacct
    client's longest request (connect timeout + read timeout): a lease that runs out while its
    request is still running lets one more request in. The default, 45 s, covers the client's
    5 s + 30 s. Hosts' clocks must agree to well within the lease (NTP does).

    Waiting polls the table every 5 ms at first, growing to 100 ms, with jitter (``poll``), one
    query a poll; one thread of a process polls for a company, the others wait for it (or for a
    turn: ``cap`` per process) without querying. A release in this process also wakes its poller
    at once. ``sleep`` replaces that
    waiting in tests (with ``clock``, so no real time passes).

    A holder giving its slot back while a thread of the same process waits for a turn hands the
    slot over instead, lease and row unchanged: no query, no write, no wake-up of a poller. Only
    for ``handoff_seconds`` after the slot was claimed from the table: then it goes back there,
    where every process's pollers may take it, and a handed lease always has at least
    ``lease_seconds - handoff_seconds`` to run.

    With ``lend_poll_seconds`` a process whose share (:meth:`share`) is below the cap borrows
    what the other processes leave unused: while a thread of it waits for a turn, one query every
    ``lend_poll_seconds`` (for all such companies at once, from a thread of its own) looks for
    slots free at two looks in a row, and a thread in line may claim one. The borrowing lasts
    ``handoff_seconds``, during which every slot the process gives back goes to its next thread;
    then its slots beyond its share go back to the table, where the other processes' pollers take
    them. Without it, a company whose payments were left to one process (the end of a batch) ran
    at that process's share of its cap while the rest of the cap stood idle.
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
        handoff_seconds: float = 1.0,
        lend_poll_seconds: float | None = None,
    ) -> None:
        if cap < 1:
            raise ValueError("cap must be at least 1")
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        if not 0 <= handoff_seconds < lease_seconds:
            raise ValueError("handoff_seconds must be at least 0 and shorter than the lease")
        if lend_poll_seconds is not None and lend_poll_seconds <= 0:
            raise ValueError("lend_poll_seconds must be positive (or None: no lending)")
        self.handoff_seconds = handoff_seconds
        self.lend_poll_seconds = lend_poll_seconds
        self._lend_recheck = 10 * (lend_poll_seconds or 0.0)
        self._scouting = False  # the thread looking for slots to lend runs
        # Told when a borrowing starts (the write-back's consumer then starts one payment more).
        self.on_borrow: Callable[[], None] | None = None
        self._engine = engine
        self.cap = cap
        self.lease_seconds = lease_seconds
        self._clock = clock
        self._sleep = sleep
        # Equal jitter: a poller never spins, and pollers in many processes do not keep step.
        self._poll = Backoff(poll[0], poll[1], floor=0.5)
        self._leases = LeaseColumns(_table, clock=clock)
        self._row = self._leases.prepared("company_id", "slot")
        self._rng = rng or random.Random()
        self._insert = conflict_insert(engine)
        self._ensured: set[str] = set()
        self._turns: dict[str, _Turns] = {}
        self._turns_each = cap
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def acquire(self, company_id: str, timeout: float = 30.0) -> Iterator[Lease]:
        """Hold one of the company's slots for the ``with`` block; :class:`SlotTimeout` after ``timeout`` s."""
        lease = self._wait_for_slot(company_id, timeout)
        try:
            yield lease
        finally:
            self._release(lease)

    def share(self, turns: int) -> None:
        """Let this process hold or claim at most ``turns`` of a company's slots at once (1 to ``cap``;
        ``cap`` until told), its share when several processes use the same slots.

        A thread beyond the share waits in this process, without a query, until one of its own
        threads gives a slot back, and then claims that slot before another process's poller
        finds it free: the slot passes from one payment to the next of the same process at once.
        The write-back's processes each take their share of the cap (the queue's consumers) and
        start one payment more per company than it, which waits here for the slot.
        """
        turns = max(1, min(self.cap, turns))
        with self._guard:
            self._turns_each = turns
            known = list(self._turns.values())
        for company_turns in known:
            company_turns.limit(turns)

    def beyond_share(self, company_id: str | None) -> int:
        """How many of the company's slots this process holds beyond its share (borrowed) now."""
        with self._guard:
            turns = self._turns.get(company_id) if company_id is not None else None
        return 0 if turns is None else turns.beyond_share()

    def in_line(self, company_id: str) -> int:
        """How many threads of this process wait for a turn at the company's slots right now."""
        return self._turns_of(company_id).waiting

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
        turns = self._turns_of(company_id)
        waits = 0
        while not turns.enter():
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise self._timed_out(company_id, timeout)
            waits += 1
            if self._scout_for(turns):
                # Looked at again now and then: a scout that ended just as this thread came to
                # wait (it saw no one waiting) is started again.
                remaining = min(remaining, self._lend_recheck)
            handed = self._pause(waits, remaining, turns.wait_for_turn)
            if handed is not None:
                return handed
            if turns.take_offer():
                borrowed = self._borrow(company_id, turns)
                if borrowed is not None:
                    return borrowed
        try:
            return self._poll_for_slot(company_id, turns, deadline, timeout)
        except BaseException:
            turns.leave(released=False)
            raise  # with a slot, the turn is given back with it (_release)

    def _pause(self, waits: int, remaining: float, wait: Callable[[float], Lease | None]) -> Lease | None:
        """The ``waits``-th pause of a thread without a turn: until the turn frees (``wait``, at most
        ``remaining`` s; a slot handed over with it), or one poll interval with an injected sleep
        (the tests' clock, under which nothing is handed over: no thread waits for a turn there)."""
        if self._sleep is not None:
            self._sleep(min(remaining, self._poll.delay(waits, self._rng)))
            return None
        return wait(remaining)

    def _poll_for_slot(self, company_id: str, turns: _Turns, deadline: float, timeout: float) -> Lease:
        polls = waits = 0
        trouble: OperationalError | None = None
        polling = False
        try:
            while True:
                if not polling and not turns.start_polling():
                    # Another thread of this process polls for the company: wait until it has a slot.
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        raise self._timed_out(company_id, timeout)
                    waits += 1
                    self._pause(waits, remaining, turns.wait_to_poll)
                    continue
                polling = True
                seen = turns.seen()
                try:
                    self._ensure_rows(company_id)
                    lease = self._try_claim(company_id)
                except OperationalError as exc:
                    # SQLite busy past its timeout, a dropped connection: try again at the next
                    # poll, and say so if it lasts until the deadline.
                    trouble, lease = exc, None
                if lease is not None:
                    return lease
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise self._timed_out(company_id, timeout, trouble) from trouble
                polls += 1
                delay = min(remaining, self._poll.delay(polls, self._rng))
                if self._sleep is not None:
                    self._sleep(delay)
                else:
                    turns.wait(seen, delay)
        finally:
            if polling:
                turns.stop_polling()

    # -- lending ------------------------------------------------------------------------------

    def _lends(self, turns: _Turns) -> bool:
        return self.lend_poll_seconds is not None and self._sleep is None and turns.lends()

    def _scout_for(self, turns: _Turns) -> bool:
        """Start the thread that looks for slots to lend, unless it runs; False: nothing to lend."""
        if not self._lends(turns):
            return False
        with self._guard:
            if self._scouting:
                return True
            self._scouting = True
        threading.Thread(target=self._scout, name="intacct-slot-scout", daemon=True).start()
        return True

    def _scout(self) -> None:
        """While threads wait for a turn at companies whose share is all taken: every
        ``lend_poll_seconds`` one query for those companies' slots, and each free one offered to a
        thread in line. Ends when no thread waits so (started again by the next one)."""
        assert self.lend_poll_seconds is not None
        seen: set[tuple[str, int]] = set()
        idle = 0
        try:
            while True:
                with self._guard:
                    wanted = {
                        company: turns
                        for company, turns in self._turns.items()
                        if turns.wanted() and turns.lends()
                    }
                    # Ends at the second look in a row without a thread waiting: the thread that
                    # started it may not have begun to wait at the first.
                    idle = 0 if wanted else idle + 1
                    if idle >= 2:
                        self._scouting = False
                        return
                free: set[tuple[str, int]] = set()
                if wanted:
                    try:
                        free = self._free_slots(list(wanted))
                    except SQLAlchemyError as exc:
                        log.warning("intacct_slot_scout_failed", error=type(exc).__name__)
                # Only a slot free at two looks in a row is lent: one free for a moment is being
                # passed on by the process whose share it is (a poller of its own claims it at once).
                for company, count in Counter(company for company, _slot in free & seen).items():
                    wanted[company].offer(count)
                seen = free
                time.sleep(self.lend_poll_seconds)
        except BaseException:
            with self._guard:
                self._scouting = False
            raise

    def _free_slots(self, companies: list[str]) -> set[tuple[str, int]]:
        """The companies' slots free now, as (company, slot) (one query for them all)."""
        now = self._clock()
        with self._engine.connect() as conn:
            rows = conn.execute(_SLOTS_OF, {"companies": companies, "cap": self.cap}).all()
        return {
            (company, slot)
            for company, slot, holder, until in rows
            if self._leases.is_free(holder, until, now)
        }

    def _borrow(self, company_id: str, turns: _Turns) -> Lease | None:
        """Claim a slot seen free beyond this process's share: a borrowed lease, or None (taken since).

        A borrowing lasts ``handoff_seconds`` from the claim the scout's offer led to: meanwhile a
        slot this process gives back is offered to its next thread at once, so a company left to
        this process runs at its whole cap; then the process must find a slot free at two looks
        again, and a process whose share it is has had the time to claim it back."""
        try:
            lease = self._try_claim(company_id)
        except OperationalError:
            return None  # the next offer, or the turn, will do
        if lease is None:
            return None
        turns.borrowed()
        now = self._clock()
        if now >= turns.lend_until:
            turns.lend_until = now + self.handoff_seconds
        if self.on_borrow is not None:
            self.on_borrow()
        return replace(lease, borrowed=True)

    def _timed_out(self, company_id: str, timeout: float, trouble: Exception | None = None) -> SlotTimeout:
        cause = f" (last database error: {type(trouble).__name__})" if trouble else ""
        return SlotTimeout(
            f"all {self.cap} Intacct slots of company {company_id} stayed busy for {timeout:g} s{cause}"
        )

    def _try_claim(self, company_id: str) -> Lease | None:
        """One look at the company's slots (one query), then a claim of a free one; with none free,
        of one whose holder died on this node, without waiting for its lease to run out.

        A holder on another host (or in another PID namespace) cannot be checked, so its slot
        waits for the lease.
        """
        now = self._clock()
        with self._engine.connect() as conn:
            rows = conn.execute(_SLOTS, {"key__company_id": company_id, "cap": self.cap}).all()
        free = [slot for slot, holder, until in rows if self._leases.is_free(holder, until, now)]
        # Trying the free slots in random order keeps simultaneous claimants off one row.
        self._rng.shuffle(free)
        for slot in free:
            # Unique per acquisition, so a late release can never free a slot someone else took since.
            holder = new_holder()
            # The WHERE repeats the "free" check: the row is taken only if still free now
            # (PostgreSQL re-checks it after a concurrent update; SQLite writes one at a time).
            if self._write(
                self._row.claim, company_id, slot, now=now, holder=holder, until=now + self.lease_seconds
            ):
                return Lease(company_id, slot, holder, now + self.lease_seconds, clock=self._clock)
        if free:
            return None
        for slot, dead, _until in rows:
            if dead is None or not holder_is_dead(dead):
                continue
            holder = new_holder()
            # Only while that dead holder still has it: another claimant may have been quicker.
            if self._write(
                self._row.take_over,
                company_id,
                slot,
                owner=dead,
                holder=holder,
                until=now + self.lease_seconds,
            ):
                log.info("intacct_slot_reclaimed", company_id=company_id, reason="holder_process_gone")
                return Lease(company_id, slot, holder, now + self.lease_seconds, clock=self._clock)
        return None

    def _write(self, statement: Any, company_id: str, slot: int, **lease: Any) -> bool:
        params = self._row.params({"company_id": company_id, "slot": slot}, **lease)
        with write_transaction(self._engine) as conn:
            return conn.execute(statement, params).rowcount == 1

    def _release(self, lease: Lease) -> None:
        turns = self._turns_of(lease.company_id)
        claimed_at = lease.leased_until - self.lease_seconds
        now = self._clock()
        fresh = now - claimed_at < self.handoff_seconds
        # While a borrowing lasts, every slot the process gives back goes to its next thread.
        borrowing = self._lends(turns) and now < turns.lend_until
        handing = fresh and not lease.kept and (borrowing or not lease.borrowed)
        if handing and turns.hand_over(replace(lease), borrowing=borrowing):
            return  # the row stays taken, by the thread in line now
        freed = False
        try:
            freed = self._release_row(lease)
        finally:
            turns.leave(released=freed, borrowing=borrowing)

    def _release_row(self, lease: Lease) -> bool:
        """Free the lease's row (unless it is kept); True when it was freed."""
        if lease.kept:
            return False
        try:
            # Only if still ours: after the lease ran out someone else may hold the slot.
            self._write(self._row.release, lease.company_id, lease.slot, owner=lease.holder)
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

    def _turns_of(self, company_id: str) -> _Turns:
        with self._guard:
            turns = self._turns.get(company_id)
            if turns is None:
                turns = self._turns[company_id] = _Turns(self._turns_each, self.cap)
            return turns


# How often a process whose share of a company's cap is all taken looks for slots the other
# processes leave free: a query for all such companies at once, so 10 a second at most per process.
LEND_POLL_SECONDS = 0.1


def company_slots(settings: Any, engine: Engine, *, lease_seconds: float | None = None) -> CompanySlots:
    """The Intacct cap of ``INTACCT_MAX_CONCURRENCY_PER_COMPANY`` per company, kept in ``engine``,
    lending what one process leaves free to another; ``lease_seconds`` (when given) must outlast the
    longest request made under a slot."""
    cap = settings.intacct_max_concurrency_per_company
    if lease_seconds is None:
        return CompanySlots(engine, cap=cap, lend_poll_seconds=LEND_POLL_SECONDS)
    return CompanySlots(engine, cap=cap, lease_seconds=lease_seconds, lend_poll_seconds=LEND_POLL_SECONDS)
