"""The ledger's lookup on an SQLite file keeps the GIL, answers as the driver does, and hands
over to the driver whenever SQLite cannot answer at once."""

from __future__ import annotations

import gc
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from ingest import sqlite_held
from ingest.ledger import DeliveryLedger
from store import SecretBox, create_engine_for, generate_key, upgrade
from workers.connections.store import ConnectionStore

pytestmark = pytest.mark.skipif(
    not sqlite_held.available(), reason="sqlite3 is not on a shared libsqlite3 here (Linux only)"
)

LOOKUPS = 2000
# Turns the probe may get while lookups keep the GIL (none was seen).
HELD_TURNS = 2


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "flexsync.db"


@pytest.fixture
def engine(path: Path) -> Iterator[Engine]:
    engine = create_engine_for(f"sqlite:///{path}")
    upgrade(engine)
    _seed(engine)
    yield engine
    engine.dispose()


def _seed(engine: Engine) -> None:
    # In a function of its own: its ledger's connections close when it returns.
    ConnectionStore(engine, SecretBox([generate_key()])).save(
        "conn-1", account_id="acct-1", company_id="CO-1", entity_id=None, user_id="u", state="connected"
    )
    ledger = DeliveryLedger(engine)
    ledger.record_many([("conn-1", f"key-{n}", f"event-{n}") for n in range(50)])
    ledger.record("conn-1", "k" * 500, "event-long")


class _GilProbe:
    """A thread that runs only when another thread lets go of the GIL: with a switch interval
    longer than the test, the GIL is never taken away from a thread that keeps it."""

    def __init__(self) -> None:
        self.turns = 0
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self._started.set()
        while not self._stop.is_set():
            self.turns += 1
            time.sleep(0)  # lets go of the GIL: the other thread goes on at once

    def __enter__(self) -> _GilProbe:
        self._interval = sys.getswitchinterval()
        self._thread.start()
        assert self._started.wait(5)
        sys.setswitchinterval(30.0)
        self.turns = 0
        return self

    def __exit__(self, *_exc: object) -> None:
        sys.setswitchinterval(self._interval)
        self._stop.set()
        self._thread.join(5)


def _turns_during_lookups(ledger: DeliveryLedger) -> int:
    ledger.lookup("conn-1", "warm-up")  # the thread's connection is opened outside the count
    with _GilProbe() as probe:
        for n in range(LOOKUPS):
            ledger.lookup("conn-1", f"key-{n % 60}")
        return probe.turns


def test_a_lookup_answers_as_the_driver_does(engine: Engine):
    held, driver = DeliveryLedger(engine), DeliveryLedger(engine, hold_gil=False)
    cases = [("conn-1", f"key-{n}") for n in range(0, 60, 7)]
    cases += [("conn-1", "k" * 500), ("conn-1", "k" * 499), ("conn-2", "key-1"), ("conn-1", "ключ-1")]
    for connection_id, key in cases:
        assert held.lookup(connection_id, key) == driver.lookup(connection_id, key), (connection_id, key)
    assert held.lookup("conn-1", "key-3").event_id == "event-3"
    assert held.lookup("conn-2", "key-3") == (None, None)


def test_a_lookup_keeps_the_gil(engine: Engine):
    # The probe's own check: the driver lets go of the GIL three times per lookup, and the
    # probe gets it on a tenth of the lookups or so (the letting-go thread often takes it
    # back first).
    assert _turns_during_lookups(DeliveryLedger(engine, hold_gil=False)) >= LOOKUPS // 100
    assert _turns_during_lookups(DeliveryLedger(engine)) <= HELD_TURNS


def test_a_lookup_sees_a_change_committed_by_another_connection(engine: Engine):
    ledger = DeliveryLedger(engine)
    assert ledger.seen("conn-1", "late") is None
    DeliveryLedger(engine, hold_gil=False).record("conn-1", "late", "event-late")
    assert ledger.seen("conn-1", "late") == "event-late"


def test_a_database_sqlite_cannot_read_at_once_is_waited_for_by_the_driver(engine: Engine, path: Path):
    # Only the writer below may have the file open, or it cannot lock it: the pool's
    # connections close now, the ledger's own ones once collected.
    engine.dispose()
    gc.collect()
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("PRAGMA locking_mode = EXCLUSIVE")
    writer.execute("BEGIN EXCLUSIVE")
    writer.execute("UPDATE webhook_deliveries SET event_id = 'event-0b' WHERE idempotency_key = 'key-0'")
    writer.execute("COMMIT")  # the exclusive lock stays until the locking mode is normal again

    def release() -> None:
        writer.execute("PRAGMA locking_mode = NORMAL")
        writer.execute("SELECT count(*) FROM webhook_deliveries").fetchall()
        writer.close()

    ledger = DeliveryLedger(engine)
    timer = threading.Timer(0.3, release)
    started = time.monotonic()
    timer.start()
    try:
        # Held, this lookup cannot read; the driver waits (busy timeout) with the GIL let go,
        # so the timer thread can release the lock at all.
        assert ledger.seen("conn-1", "key-0") == "event-0b"
    finally:
        timer.join(5)
    assert time.monotonic() - started >= 0.25
    # Once the file is free the held path reads again, on its own connection.
    assert _turns_during_lookups(ledger) <= HELD_TURNS


def test_a_held_connection_that_broke_is_replaced(engine: Engine):
    ledger = DeliveryLedger(engine)
    assert ledger.seen("conn-1", "key-1") == "event-1"
    broken = ledger._held._local.prepared  # type: ignore[union-attr]
    broken.close()  # its statement and connection are gone underneath it
    assert ledger.seen("conn-1", "key-1") == "event-1"  # answered by the driver meanwhile
    assert ledger.seen("conn-1", "key-2") == "event-2"
    assert ledger._held._local.prepared is not broken  # type: ignore[union-attr]
    assert _turns_during_lookups(ledger) <= HELD_TURNS


def test_a_slow_read_sends_reads_to_the_driver_for_a_while(engine: Engine, path: Path):
    # A read that took 60 ms waited inside SQLite with the whole process stopped: for the
    # next 10 s the caller is told to ask the driver (None), then reads are held again.
    times = iter([0.0, 0.060, 5.0, 10.061, 10.081, 10.1, 10.1005])
    statement = sqlite_held.HeldStatement(
        str(path),
        "SELECT CAST((SELECT event_id FROM webhook_deliveries WHERE idempotency_key = ?1) AS TEXT)",
        columns=1,
        clock=lambda: next(times),
    )
    assert statement.fetch_row("key-4") == ("event-4",)  # slow, but its answer stands
    assert statement.fetch_row("key-4") is None  # paused
    assert statement.fetch_row("key-5") == ("event-5",)  # 20 ms (not on a CPU): held again
    assert statement.fetch_row("key-6") == ("event-6",)
