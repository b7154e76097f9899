"""Watermarks and their leases, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from workers.reconcile.store import LeaseLost, WatermarkStore

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def marks(engine: Engine, clock: Clock) -> WatermarkStore:
    return WatermarkStore(engine, clock=clock)


def test_a_first_claim_creates_an_empty_watermark(marks: WatermarkStore):
    assert marks.get("c1", "invoices") is None
    claimed = marks.claim("c1", "invoices", "a", ttl=60)
    assert claimed is not None
    assert (claimed.modified_since, claimed.swept_at, claimed.keyset_checked_at) == (None, None, None)


def test_a_held_lease_keeps_others_out_until_released_or_expired(marks: WatermarkStore, clock: Clock):
    assert marks.claim("c1", "invoices", "a", ttl=60) is not None
    assert marks.claim("c1", "invoices", "b", ttl=60) is None
    assert marks.claim("c1", "customers", "b", ttl=60) is not None  # another resource is free
    marks.release("c1", "invoices", "b")  # not b's: nothing happens
    assert marks.claim("c1", "invoices", "b", ttl=60) is None
    marks.release("c1", "invoices", "a")
    assert marks.claim("c1", "invoices", "b", ttl=60) is not None
    clock.now += 61  # b crashed: its lease runs out
    assert marks.claim("c1", "invoices", "a", ttl=60) is not None


def test_advance_persists_and_never_moves_back(marks: WatermarkStore, engine: Engine, clock: Clock):
    marks.claim("c1", "invoices", "a", ttl=60)
    marks.advance("c1", "invoices", "a", modified_since=T0, swept_at=T0, keyset_checked_at=T0)
    later = T0 + timedelta(minutes=15)
    advanced = marks.advance("c1", "invoices", "a", modified_since=T0 - timedelta(hours=1), swept_at=later)
    assert advanced.modified_since == T0  # an older start does not move it back
    assert advanced.swept_at == later and advanced.keyset_checked_at == T0
    # Another store over the same database (another process) reads the same.
    again = WatermarkStore(engine, clock=clock).get("c1", "invoices")
    assert again is not None and again.modified_since == T0 and again.modified_since.tzinfo is not None


def test_a_holder_whose_lease_ran_out_cannot_write(marks: WatermarkStore, clock: Clock):
    marks.claim("c1", "invoices", "a", ttl=60)
    marks.renew("c1", "invoices", "a", ttl=60)
    clock.now += 61
    with pytest.raises(LeaseLost):
        marks.advance("c1", "invoices", "a", modified_since=T0, swept_at=T0)
    assert marks.claim("c1", "invoices", "b", ttl=60) is not None
    with pytest.raises(LeaseLost):
        marks.renew("c1", "invoices", "a", ttl=60)
    assert marks.get("c1", "invoices").modified_since is None


def test_many_claimants_at_once_get_exactly_one_winner(engine: Engine):
    marks = WatermarkStore(engine)
    winners: list[str] = []
    barrier = threading.Barrier(8)

    def contend(name: str) -> None:
        barrier.wait()
        if marks.claim("c1", "invoices", name, ttl=60) is not None:
            winners.append(name)

    threads = [threading.Thread(target=contend, args=(f"p{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(winners) == 1
