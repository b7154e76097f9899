"""Consumers of one queue share a key's limit (the write-back's company cap) on a real broker."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection, Exchange, Producer, Queue

from workers.runtime.messages import Delivery, MessageConsumer

from .test_runtime import running, wait_until


@pytest.fixture
def shared_queue(amqp_url: str) -> Iterator[tuple[str, Queue]]:
    name = f"test.share.{uuid.uuid4().hex[:8]}"
    queue = Queue(
        name, Exchange(""), routing_key=name, queue_arguments={"x-queue-type": "quorum"}, durable=True
    )
    with Connection(amqp_url) as connection:
        queue(connection.default_channel).declare()
        try:
            yield amqp_url, queue
        finally:
            queue(connection.default_channel).delete()


def test_two_consumers_of_a_queue_each_run_their_share_of_a_key_s_limit(shared_queue):
    amqp_url, queue = shared_queue
    never = threading.Event()
    lock = threading.Lock()
    running_now: Counter[str] = Counter()
    most_at_once: Counter[str] = Counter()
    done: list[int] = []

    def handle(delivery: Delivery) -> None:
        company = delivery.body["company"]
        with lock:
            running_now[company] += 1
            most_at_once[company] = max(most_at_once[company], running_now[company])
        never.wait(0.2)  # the work: long enough for every held message to start, were it allowed
        with lock:
            running_now[company] -= 1
            done.append(delivery.body["n"])

    def consumer(**options: Any) -> MessageConsumer:
        made = MessageConsumer(
            Connection(amqp_url), [queue], handle, name="writeback", workers=4, prefetch=8,
            key=lambda body: body.get("company"), per_key=2, share_keys=True, **options,
        )  # fmt: skip
        made.share_tick_seconds = 0.1
        return made

    def run_six_of_one_company(first: MessageConsumer, second: MessageConsumer) -> None:
        """Once both count two consumers, six messages of one company, handled to the last."""
        wait_until(lambda: first.key_share == 1 and second.key_share == 1, timeout=15)
        with Connection(amqp_url) as connection:
            producer = Producer(connection.default_channel)
            for n in range(6):
                producer.publish({"n": n, "company": "busy"}, exchange="", routing_key=queue.name)
        wait_until(lambda: len(done) == 6, timeout=15)

    first, second = consumer(), consumer()
    assert first.key_share == 2  # all of it, until the consumers are counted
    with running(first), running(second):
        # Each counts the queue's two consumers: a company's 2 become 1 each.
        run_six_of_one_company(first, second)
    # Each consumer was handed three and has four threads: each ran one at a time, two in all.
    assert most_at_once["busy"] == 2
    # Alone on the queue, a consumer runs the whole limit again, and is told so.
    told: list[int] = []
    alone = consumer(on_share=told.append)
    with running(alone):
        wait_until(lambda: alone.key_share == 2, timeout=15)
    assert told == []  # its share never changed from the whole
    # With a spare, each also starts one more than its share (to wait in line in its handler).
    most_at_once.clear()
    done.clear()
    shares: list[int] = []
    first, second = consumer(spare=1, on_share=shares.append), consumer(spare=1)
    with running(first), running(second):
        run_six_of_one_company(first, second)
    assert most_at_once["busy"] == 4 and shares == [1]


def test_a_consumer_without_share_keys_runs_the_whole_limit(shared_queue):
    amqp_url, queue = shared_queue
    plain = MessageConsumer(
        Connection(amqp_url),
        [queue],
        lambda delivery: None,
        name="writeback",
        key=lambda body: None,
        per_key=2,
    )
    other = MessageConsumer(Connection(amqp_url), [queue], lambda delivery: None, name="writeback")
    with running(plain), running(other):
        wait_until(lambda: plain.in_hand() == 0, timeout=5)
        assert plain.key_share == 2
