"""The receiver's memory of deliveries in flight and just accepted (ingest.recent)."""

from __future__ import annotations

import gc
import threading

import pytest

from ingest.recent import DeliveryAbandoned, RecentDeliveries


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_first_copy_publishes_and_a_later_one_gets_its_event_id():
    recent = RecentDeliveries()
    assert recent.begin(("c1", "k1")) is None
    waiting = recent.begin(("c1", "k1"))
    assert waiting is not None and not waiting.done()

    recent.accepted(("c1", "k1"), "evt-1")

    assert waiting.result(timeout=0) == "evt-1"
    again = recent.begin(("c1", "k1"))
    assert again is not None and again.result(timeout=0) == "evt-1"
    assert recent.begin(("c2", "k1")) is None  # the connection is part of the identity


def test_copies_waiting_on_an_abandoned_delivery_are_told_and_the_next_copy_publishes():
    recent = RecentDeliveries()
    assert recent.begin(("c", "k")) is None
    waiting = recent.begin(("c", "k"))
    assert waiting is not None

    recent.abandoned(("c", "k"))

    with pytest.raises(DeliveryAbandoned):
        waiting.result(timeout=0)
    assert recent.begin(("c", "k")) is None


def test_copies_arriving_together_wait_for_the_one_that_publishes():
    recent = RecentDeliveries()
    assert recent.begin(("c", "k")) is None
    futures = []
    started = threading.Barrier(8)

    def copy() -> None:
        started.wait()
        futures.append(recent.begin(("c", "k")))

    threads = [threading.Thread(target=copy) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    recent.accepted(("c", "k"), "evt")

    assert len(futures) == 8 and all(future is not None for future in futures)
    assert {future.result(timeout=0) for future in futures} == {"evt"}


def test_an_accepted_delivery_is_forgotten_after_remember_seconds():
    clock = Clock()
    recent = RecentDeliveries(remember_seconds=300, clock=clock)
    for n in range(50):
        recent.begin(("c", f"k{n}"))
        recent.accepted(("c", f"k{n}"), f"evt-{n}")
    clock.now += 299
    assert recent.begin(("c", "k0")) is not None
    assert len(recent) == 50

    clock.now += 2
    assert recent.begin(("c", "k0")) is None  # forgotten: this copy publishes again
    # And every other one as old went with it, not only the one asked about.
    assert len(recent) == 1


def test_beyond_max_entries_the_oldest_accepted_go_and_none_in_flight():
    recent = RecentDeliveries(max_entries=10)
    in_flight = [("c", f"busy{n}") for n in range(5)]
    for identity in in_flight:
        assert recent.begin(identity) is None
    for n in range(25):
        recent.begin(("c", f"k{n}"))
        recent.accepted(("c", f"k{n}"), f"evt-{n}")

    assert len(recent) == 5 + 10
    assert recent.begin(("c", "k14")) is None  # among the oldest: forgotten
    remembered = recent.begin(("c", "k24"))
    assert remembered is not None and remembered.result(timeout=0) == "evt-24"
    for identity in in_flight:
        still = recent.begin(identity)
        assert still is not None and not still.done()


def test_remembered_deliveries_leave_nothing_for_the_garbage_collector_to_visit():
    recent = RecentDeliveries()
    gc.collect()
    before = len(gc.get_objects())
    for n in range(20_000):
        identity = (f"conn-{n % 7}", f"key-{n}")
        recent.begin(identity)
        recent.accepted(identity, f"event-{n}")
    gc.collect()

    grown = len(gc.get_objects()) - before

    assert len(recent) == 20_000
    # A full collection visits every tracked object: the remembered deliveries must not be.
    assert grown < 1_000
