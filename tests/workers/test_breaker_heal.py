"""Issue 30 #13: when a peer's breaker closes, the work held back for it resumes at once.

Without a broker's TTLs (kombu's in-memory transport): what waits in the delay queues goes back
to its work queue when asked, each copy before the ack, all but the shortest delay (a recheck's
copy must wait it out); and a breaker closed by this process's probe tells its listeners.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kombu import Connection, Producer, Queue

from broker.topology import delay_queue_name
from reliability.breaker import BreakerPolicy, Breakers, intacct_peer
from store.breakers import BreakerStore
from tests.conftest import wait_until
from tests.workers.conftest import PAYMENTS, SCHEDULE, depth
from workers.runtime.failures import Failure
from workers.runtime.messages import Delivery, MessageConsumer


@pytest.fixture
def queue_name(memory_queue_name) -> str:
    return memory_queue_name


@pytest.fixture
def broker(memory_broker) -> Connection:
    return memory_broker


def test_the_delay_queues_are_released_to_their_work_queue_when_asked(broker, queue_name):
    producer = Producer(broker.default_channel)
    for delay in SCHEDULE.delays:
        for n in range(3):
            producer.publish(
                {"delay": delay, "n": n},
                exchange="",
                routing_key=delay_queue_name(queue_name, delay),
                headers={"x-attempts": 4},
            )
    handled: list[Any] = []

    def handle(delivery: Delivery) -> Failure | None:
        handled.append(delivery.body)
        return None

    queue = Queue(queue_name, PAYMENTS, routing_key="payment.#")
    consumer = MessageConsumer(broker.clone(), [queue], handle, name="writeback", retry=SCHEDULE)
    thread = threading.Thread(target=consumer.run, kwargs={"safety_interval": 0.01}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: consumer.producer is not None, timeout=10, message="consuming")
        assert handled == []
        consumer.release_delayed()  # e.g. from another thread, as the breakers' listener does
        wait_until(lambda: len(handled) == 6, timeout=10, message="the released messages handled")
    finally:
        consumer.stop()
        thread.join(10)
        consumer.close()
    assert sorted((b["delay"], b["n"]) for b in handled) == [(d, n) for d in (5, 30) for n in range(3)]
    assert (
        depth(broker, delay_queue_name(queue_name, 5)) == depth(broker, delay_queue_name(queue_name, 30)) == 0
    )
    assert depth(broker, delay_queue_name(queue_name, 1)) == 3, "the shortest delay is left to run out"


def test_a_breaker_closed_by_this_process_tells_its_listeners(engine):
    now = [1_000_000.0]
    breakers = Breakers(
        BreakerStore(engine),
        BreakerPolicy(threshold=2, probe_delays=(10.0,), cache_seconds=0.0),
        holder="host-a:1",
        clock=lambda: now[0],
        rand=lambda: 1.0,
    )
    closed: list[str] = []
    breakers.on_closed(closed.append)
    peer = intacct_peer("conn-1")
    for _ in range(2):
        breakers.failed(breakers.permit(peer), "intacct_unavailable")
    breakers.succeeded(breakers.permit(intacct_peer("conn-2")))  # another peer, never open
    now[0] += 10.0
    probe = breakers.permit(peer)
    assert probe.probe
    breakers.succeeded(probe)
    assert closed == [peer]


def test_the_probes_of_a_peer_down_for_long_stay_at_most_30_s_apart():
    policy = BreakerPolicy()
    assert max(policy.probe_delay(openings, rand=lambda: 1.0) for openings in range(1, 100)) <= 30.0
