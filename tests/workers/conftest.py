"""Fixtures of the worker runtime's tests that need no broker: kombu's in-memory transport."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kombu import Connection, Exchange, Queue

from broker.topology import DEAD_LETTER_QUEUE_NAME, delay_queue_name
from workers.runtime.failures import RetrySchedule

PAYMENTS = Exchange("flexpoint.payments", "topic")
SCHEDULE = RetrySchedule((1, 5, 30), window_seconds=3600)


@pytest.fixture
def memory_queue_name() -> str:
    return f"writeback-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def memory_broker(memory_queue_name) -> Iterator[Connection]:
    """An in-memory broker with a write-back-like work queue, its delay queues (SCHEDULE) and the
    dead-letter queue; it never expires anything."""
    with Connection("memory://") as connection:
        channel = connection.channel()
        names = (DEAD_LETTER_QUEUE_NAME, *(delay_queue_name(memory_queue_name, d) for d in SCHEDULE.delays))
        for name in names:
            Queue(name, channel=channel).declare()
        Queue(memory_queue_name, PAYMENTS, routing_key="payment.#", channel=channel).declare()
        yield connection


def depth(broker: Connection, name: str) -> int:
    return Queue(name, channel=broker.default_channel).queue_declare(passive=True).message_count
