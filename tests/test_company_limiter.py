"""The per-company Intacct cap in the database (clients.intacct.slots): never more than ``cap`` holders,
across threads, processes and the client's real calls; a SIGKILLed holder's slot comes back.

Runs on SQLite (a file under tmp_path) and PostgreSQL (``FLEXSYNC_TEST_POSTGRES_URL``, one fresh
schema per test), like tests/test_store.py.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, select, text

from clients.intacct.slots import CompanySlots, SlotTimeout
from store import create_engine_for
from store.models import IntacctSlot
from tests.conftest import wait_until

# The client and the simulator are imported where used: processes spawned by these tests import
# this module, and each would otherwise load Flask, the simulator and requests for nothing.
COMPANY = "ACME"

DEADLINE = 30.0


# --- databases -----------------------------------------------------------------------------


class FakeTime:
    """A clock and a sleep that only move each other: waiting costs no real time."""

    def __init__(self, start: float) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# --- concurrency: threads and processes --------------------------------------------------------


class Occupancy:
    """Counts holders inside the slot, remembers the most at once, and deals out the work."""

    def __init__(self, counter, peak, remaining, lock) -> None:
        self.counter, self.peak, self.remaining, self.lock = counter, peak, remaining, lock

    def take_task(self) -> bool:
        with self.lock:
            if self.remaining.value == 0:
                return False
            self.remaining.value -= 1
            return True

    def enter(self) -> None:
        with self.lock:
            self.counter.value += 1
            self.peak.value = max(self.peak.value, self.counter.value)

    def leave(self) -> None:
        with self.lock:
            self.counter.value -= 1


def _hold_until_done(slots: CompanySlots, occupancy: Occupancy, barrier) -> None:
    """Take a slot, then a task; wait inside until ``cap`` holders are in; until no task is left."""
    while True:
        with slots.acquire(COMPANY, timeout=DEADLINE):
            if not occupancy.take_task():
                return
            occupancy.enter()
            try:
                # Waiting for ``cap`` holders proves the cap is reached; were a (cap+1)th holder
                # let in, the counter would show it before the barrier let anyone go. The number
                # of tasks is a multiple of ``cap`` and threads keep going until none is left, so
                # every group fills up.
                barrier.wait(timeout=DEADLINE)
            finally:
                occupancy.leave()


class Box:
    def __init__(self, value: int = 0) -> None:
        self.value = value


def test_never_more_than_cap_holders_across_sixteen_threads(engine: Engine):
    cap, threads = 4, 16
    slots = CompanySlots(engine, cap=cap)
    occupancy = Occupancy(Box(), Box(), Box(cap * 20), threading.Lock())
    barrier = threading.Barrier(cap)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            _hold_until_done(slots, occupancy, barrier)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=DEADLINE)
    assert not any(worker.is_alive() for worker in workers)
    assert errors == []
    assert occupancy.remaining.value == 0
    assert occupancy.peak.value == cap
    assert slots.holders(COMPANY) == 0


def _process_worker(url: str, cap: int, threads: int, counter, peak, remaining, lock, barrier) -> None:
    engine = create_engine_for(url)
    slots = CompanySlots(engine, cap=cap)
    occupancy = Occupancy(counter, peak, remaining, lock)
    workers = [
        threading.Thread(target=_hold_until_done, args=(slots, occupancy, barrier)) for _ in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=DEADLINE)
    engine.dispose()
    if any(worker.is_alive() for worker in workers):
        raise SystemExit(3)


def test_never_more_than_cap_holders_across_three_processes(engine: Engine, database_url: str):
    cap = 2
    context = multiprocessing.get_context("spawn")
    lock = context.Lock()
    counter, peak = context.Value("i", 0, lock=False), context.Value("i", 0, lock=False)
    remaining = context.Value("i", cap * 4, lock=False)
    barrier = context.Barrier(cap)
    processes = [
        context.Process(
            target=_process_worker, args=(database_url, cap, 2, counter, peak, remaining, lock, barrier)
        )
        for _ in range(3)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [process.exitcode for process in processes] == [0, 0, 0]
    assert remaining.value == 0
    assert peak.value == cap
    assert counter.value == 0


# --- leases: a killed holder, timeouts, late releases -------------------------------------------


def _hold_and_hang(url: str, lease_seconds: float, holding) -> None:
    slots = CompanySlots(create_engine_for(url), cap=1, lease_seconds=lease_seconds)
    with slots.acquire(COMPANY, timeout=DEADLINE):
        holding.set()
        threading.Event().wait(120)  # until SIGKILL


def test_a_sigkilled_holder_on_this_node_gives_its_slot_back_at_once(engine: Engine, database_url: str):
    context = multiprocessing.get_context("spawn")
    holding = context.Event()
    holder = context.Process(target=_hold_and_hang, args=(database_url, 60.0, holding), daemon=True)
    holder.start()
    try:
        assert holding.wait(DEADLINE), "the holder never took its slot"
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(timeout=DEADLINE)
    assert holder.exitcode == -signal.SIGKILL

    slots = CompanySlots(engine, cap=1, lease_seconds=60.0)
    assert slots.holders(COMPANY) == 1  # the dead holder's lease has 60 s to run
    started = time.monotonic()
    with slots.acquire(COMPANY, timeout=10) as taken:
        assert taken.slot == 0 and f":{os.getpid()}:" in taken.holder
    assert time.monotonic() - started < 5  # reclaimed at once, not after the lease


def test_a_holder_on_another_node_keeps_its_slot_until_its_lease_ends(engine: Engine):
    fake = FakeTime(start=1_000_000.0)
    lease = 60.0
    slots = CompanySlots(engine, cap=1, lease_seconds=lease, clock=fake.clock, sleep=fake.advance)
    with slots.acquire(COMPANY, timeout=10):
        pass  # creates the company's slot rows
    with engine.begin() as conn:
        # A worker on another host, pid 1 there: its process cannot be checked from here.
        conn.execute(
            text(
                "UPDATE intacct_slots SET holder = :holder, leased_until = :until WHERE company_id = :company"
            ),
            {"holder": "elsewhere/pid:[1]:1:1:abc", "until": fake.now + lease, "company": COMPANY},
        )
    with pytest.raises(SlotTimeout), slots.acquire(COMPANY, timeout=10):
        pass
    fake.now += lease + 1  # the lease has run out
    with slots.acquire(COMPANY, timeout=10) as taken:
        assert taken.slot == 0 and f":{os.getpid()}:" in taken.holder


def test_acquire_waits_with_growing_jittered_polls_then_times_out(engine: Engine):
    fake = FakeTime(start=1_000_000.0)
    slots = CompanySlots(engine, cap=1, clock=fake.clock, sleep=fake.advance)
    with (
        slots.acquire(COMPANY, timeout=1),
        pytest.raises(SlotTimeout) as raised,
        slots.acquire(COMPANY, timeout=2.0),
    ):
        pass
    assert raised.value.transient is True
    assert "slots of company ACME stayed busy" in str(raised.value)
    assert sum(fake.sleeps) == pytest.approx(2.0)
    assert 0.0025 <= fake.sleeps[0] <= 0.005
    assert all(0.05 <= s <= 0.1 for s in fake.sleeps[6:-1])  # grown to the ceiling, still jittered
    assert len(set(fake.sleeps[6:-1])) > 1
    # Released on exit: the next one gets in without waiting.
    fake.sleeps.clear()
    with slots.acquire(COMPANY, timeout=1):
        assert fake.sleeps == []


def test_a_late_release_never_frees_a_slot_someone_else_took(engine: Engine):
    fake = FakeTime(start=1_000_000.0)
    slots = CompanySlots(engine, cap=1, lease_seconds=30, clock=fake.clock, sleep=fake.advance)
    # Another process's limiter: this process's own threads never claim past the cap anyway.
    elsewhere = CompanySlots(engine, cap=1, lease_seconds=30, clock=fake.clock, sleep=fake.advance)
    with slots.acquire(COMPANY, timeout=1) as first:
        fake.now += 31  # first's lease ran out while its request was still running
        with elsewhere.acquire(COMPANY, timeout=1) as second:
            assert second.slot == first.slot and second.holder != first.holder
        # second released its own claim; taking it again works
        third = elsewhere.acquire(COMPANY, timeout=1)
        third.__enter__()
    # first's exit must not free third's claim
    with engine.connect() as conn:
        holder = conn.execute(
            select(IntacctSlot.holder).where(IntacctSlot.company_id == COMPANY)
        ).scalar_one()
    assert holder is not None and holder != first.holder
    assert slots.holders(COMPANY) == 1
    third.__exit__(None, None, None)
    assert slots.holders(COMPANY) == 0


def test_threads_past_the_cap_wait_in_the_process_without_querying(engine: Engine):
    fake = FakeTime(start=1_000_000.0)
    slots = CompanySlots(engine, cap=2, clock=fake.clock, sleep=fake.advance)
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    with slots.acquire(COMPANY, timeout=1), slots.acquire(COMPANY, timeout=1):
        event.listen(engine, "before_cursor_execute", count)
        try:
            with pytest.raises(SlotTimeout), slots.acquire(COMPANY, timeout=2.0):
                pass
        finally:
            event.remove(engine, "before_cursor_execute", count)
        # Both of the process's turns are held: the third waited out its timeout without a query.
        assert statements == [] and sum(fake.sleeps) == pytest.approx(2.0)
    # The turns came back with the slots, and a timed-out wait kept none: both can be held again.
    with slots.acquire(COMPANY, timeout=1), slots.acquire(COMPANY, timeout=1):
        assert slots.holders(COMPANY) == 2


def test_a_process_holds_at_most_its_share_and_hands_the_slot_it_gives_back_to_its_next_thread(
    engine: Engine,
):
    slots = CompanySlots(engine, cap=2, poll=(0.001, 0.01))
    other_process = CompanySlots(engine, cap=2, poll=(0.001, 0.01))
    slots.share(1)
    with _statements_of_thread(engine, "in-line") as queried:
        # The company's other slot is free, but this process's share is held: its next thread
        # waits in line without a query, and another process takes the free slot meanwhile.
        first, lease, in_line, taken = _held_with_one_in_line(slots)
        with other_process.acquire(COMPANY, timeout=1) as elsewhere:
            assert elsewhere.slot != lease.slot
            assert taken == [] and queried == [] and slots.in_line(COMPANY) == 1
            first.__exit__(None, None, None)  # given back: handed to the thread in line
            in_line.join(5)
        # The same slot and lease, passed over without a look at the table or a claim: the thread
        # in line wrote once, to give the slot back to the table when done (no one waited for it).
        assert [(t.slot, t.holder, t.leased_until) for t in taken] == [
            (lease.slot, lease.holder, lease.leased_until)
        ]
        assert [q.split()[0] for q in queried if not q.startswith("BEGIN")] == ["UPDATE"]
    assert slots.holders(COMPANY) == 0
    # The share grown back to the cap: two holders in one process again.
    slots.share(2)
    with slots.acquire(COMPANY, timeout=1), slots.acquire(COMPANY, timeout=1):
        assert slots.holders(COMPANY) == 2


def test_a_slot_held_past_its_handoff_time_goes_back_to_the_table_for_every_process(engine: Engine):
    # The clock is injected, the waiting is real: the thread in line waits for a turn as in production.
    fake = FakeTime(start=1_000_000.0)
    slots = CompanySlots(engine, cap=1, poll=(0.001, 0.01), clock=fake.clock, handoff_seconds=1.0)
    with _statements_of_thread(engine, "in-line") as queried:
        first, lease, in_line, taken = _held_with_one_in_line(slots)
        fake.now += 1.5  # held since its claim for longer than handoff_seconds
        first.__exit__(None, None, None)
        in_line.join(5)
        # Released to the table and claimed from it anew: a query, another holder, a fresh lease.
        assert len(taken) == 1 and taken[0].holder != lease.holder
        assert taken[0].leased_until == lease.leased_until + 1.5
        assert any("intacct_slots" in statement for statement in queried)
    assert slots.holders(COMPANY) == 0


def test_handing_over_can_be_turned_off(engine: Engine):
    slots = CompanySlots(engine, cap=1, poll=(0.001, 0.01), handoff_seconds=0)
    first, lease, in_line, taken = _held_with_one_in_line(slots)
    first.__exit__(None, None, None)
    in_line.join(5)
    assert len(taken) == 1 and taken[0].holder != lease.holder


def test_a_process_borrows_what_the_others_leave_free_and_passes_it_on_while_the_borrowing_lasts(
    engine: Engine,
):
    slots = CompanySlots(engine, cap=2, poll=(0.001, 0.01), lend_poll_seconds=0.01)
    borrowings: list[int] = []
    slots.on_borrow = lambda: borrowings.append(1)
    slots.share(1)
    # This process's share (one slot) is held and no other process uses the other: the thread in
    # line finds it free at two looks of the scout and claims it beyond the share.
    first, lease, borrower, borrowed = _held_with_one_in_line(slots)
    borrower.join(5)
    assert len(borrowed) == 1 and borrowed[0].borrowed and borrowed[0].slot != lease.slot
    assert borrowings == [1]
    # While the borrowing lasts the process may hold both: a thread holds the borrowed slot, and
    # the consumer is told it may start one payment more of the company.
    second = slots.acquire(COMPANY, timeout=5)
    second_lease = second.__enter__()
    assert second_lease.borrowed and slots.holders(COMPANY) == 2
    assert slots.beyond_share(COMPANY) == 1
    # The slot of the share, given back while a thread waits in line, goes to that thread with
    # its lease although the process holds more than its share: the company stays at its cap.
    taken: list[Any] = []
    in_line = threading.Thread(target=_hold_once, args=(slots, taken), name="in-line", daemon=True)
    in_line.start()
    wait_until(lambda: slots.in_line(COMPANY) == 1, timeout=5, message="a thread in line")
    first.__exit__(None, None, None)
    in_line.join(5)
    assert [(t.slot, t.holder) for t in taken] == [(lease.slot, lease.holder)]
    second.__exit__(None, None, None)
    assert slots.holders(COMPANY) == 0 and slots.beyond_share(COMPANY) == 0


def test_a_borrowed_slot_goes_back_to_the_table_when_the_borrowing_ends_and_the_other_process_takes_it(
    engine: Engine,
):
    # The slots' clock is injected (the borrowing's end), the waiting is real. This process looks
    # for slots to lend only every 0.2 s and needs two looks; the other process polls every 10 ms.
    fake = FakeTime(start=1_000_000.0)
    slots = CompanySlots(
        engine, cap=2, poll=(0.001, 0.01), clock=fake.clock, handoff_seconds=1.0, lend_poll_seconds=0.2
    )
    other_process = CompanySlots(engine, cap=2, poll=(0.001, 0.01), clock=fake.clock)
    slots.share(1)
    other_process.share(1)
    first, _lease, borrower, borrowed = _held_with_one_in_line(slots)
    borrower.join(5)
    assert len(borrowed) == 1 and borrowed[0].borrowed
    borrowing = slots.acquire(COMPANY, timeout=5)
    held = borrowing.__enter__()
    assert held.borrowed and slots.holders(COMPANY) == 2
    # Another thread of this process waits in line, and the other process now wants its share.
    taken: list[Any] = []
    in_line = threading.Thread(target=_hold_once, args=(slots, taken), name="in-line", daemon=True)
    in_line.start()
    wait_until(lambda: slots.in_line(COMPANY) == 1, timeout=5, message="a thread in line")
    elsewhere: list[Any] = []
    other = threading.Thread(target=_hold_once, args=(other_process, elsewhere), daemon=True)
    other.start()
    fake.now += 1.5  # the borrowing is over
    borrowing.__exit__(None, None, None)
    # Given back to the table rather than to the thread in line: the other process's poller has it.
    other.join(5)
    assert [t.slot for t in elsewhere] == [held.slot] and taken == []
    assert slots.beyond_share(COMPANY) == 0
    first.__exit__(None, None, None)
    in_line.join(5)
    assert len(taken) == 1 and not taken[0].borrowed
    assert slots.holders(COMPANY) == 0


def _held_with_one_in_line(slots: CompanySlots) -> tuple[Any, Any, threading.Thread, list[Any]]:
    """A slot of the company held here (its ``with`` manager, entered, and its lease), and a thread
    called "in-line" waiting in this process for a turn, which appends its lease to the list once
    it has one and gives it back at once."""
    taken: list[Any] = []
    held = slots.acquire(COMPANY, timeout=5)
    lease = held.__enter__()
    in_line = threading.Thread(target=_hold_once, args=(slots, taken), name="in-line", daemon=True)
    in_line.start()
    wait_until(lambda: slots.in_line(COMPANY) == 1, timeout=5, message="a thread in line")
    return held, lease, in_line, taken


@contextlib.contextmanager
def _statements_of_thread(engine: Engine, name: str) -> Iterator[list[str]]:
    """The statements the thread called ``name`` sends through ``engine`` in the block."""
    queried: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        if threading.current_thread().name == name:
            queried.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield queried
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _hold_once(slots: CompanySlots, taken: list[Any]) -> None:
    with slots.acquire(COMPANY, timeout=5) as lease:
        taken.append(lease)


def test_caps_are_per_company_and_a_lower_cap_uses_only_its_slots(engine: Engine):
    fake = FakeTime(start=1_000_000.0)
    wide = CompanySlots(engine, cap=3, clock=fake.clock, sleep=fake.advance)
    narrow = CompanySlots(engine, cap=1, clock=fake.clock, sleep=fake.advance)
    with wide.acquire(COMPANY, timeout=1), wide.acquire(COMPANY, timeout=1), wide.acquire(COMPANY, timeout=1):
        assert wide.holders(COMPANY) == 3
        # Another company is not affected by this one being full.
        with wide.acquire("OTHER-CO", timeout=1) as other:
            assert other.slot in (0, 1, 2) and fake.sleeps == []
        with pytest.raises(SlotTimeout), wide.acquire(COMPANY, timeout=0.5):
            pass
        # A process configured with cap 1 competes for slot 0 only.
        with pytest.raises(SlotTimeout), narrow.acquire(COMPANY, timeout=0.5):
            pass
    with narrow.acquire(COMPANY, timeout=1) as only:
        assert only.slot == 0


# --- end to end: the client under the cap against the simulator ----------------------------------


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Any]:
    from sandbox.intacct.seed import SeedOptions, seed_company
    from sandbox.intacct.server import SimulatorServer
    from tests.sandbox.conftest_intacct import AS_OF, make_config

    with SimulatorServer(make_config(tmp_path, port=0)) as server:
        seed_company(
            server.simulator.store, COMPANY, SeedOptions(customers=20, invoices=20, seed=5, as_of=AS_OF)
        )
        yield server


def test_eight_threads_through_the_client_never_exceed_the_cap_at_intacct(engine: Engine, simulator: Any):
    import requests

    from clients.intacct import IntacctClient, TokenProvider, build_session
    from config.settings import Settings
    from sandbox.intacct.faults import FaultSettings
    from tests.sandbox.conftest_intacct import SECRET, USER
    from workers.connections.store import ConnectionRecord

    settings = Settings(flexsync_env="test", intacct_api_url=simulator.api_url, intacct_client_secret=SECRET)
    session = build_session(pool_size=8)
    sleeps: list[float] = []
    client = IntacctClient(
        settings,
        tokens=TokenProvider(settings, session),
        slots=CompanySlots(engine, cap=2),
        session=session,
        sleep=sleeps.append,
    )
    connection = ConnectionRecord(
        connection_id="conn-1",
        account_id="acct-1",
        company_id=COMPANY,
        entity_id=None,
        user_id=USER,
        state="connected",
        webhook_secrets=(),
        created_at=datetime.now(UTC),
        updated_at=datetime.now(UTC),
    )
    # Slow calls, so the eight threads really overlap while they hold slots.
    simulator.simulator.faults.configure(FaultSettings(latency_ms=3))
    errors: list[BaseException] = []
    found: list[int] = []

    def work(offset: int) -> None:
        try:
            for call in range(20):
                record = client.get(connection, "accounts-receivable/customer", str((offset + call) % 20 + 1))
                found.append(int(record is not None))
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=DEADLINE)
    assert errors == [] and sum(found) == 160
    stats = requests.get(
        f"{simulator.base_url}/sandbox/stats", params={"companyId": COMPANY}, timeout=10
    ).json()
    assert stats["tooManyRequests"] == 0
    assert stats["peakInFlight"][COMPANY] == 2
    assert stats["calls"][COMPANY]["accounts-receivable/customer"] == 160
    assert sleeps == []  # nothing had to back off
