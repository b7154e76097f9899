"""The delay pump: delay queues have no TTL, the workers move each delayed message back when due.

(RabbitMQ 3.10's quorum queues can stop dead-lettering expired messages after a failover, R7.)
Without a broker (kombu's in-memory transport, which never expires anything either): a message
whose ``x-flexsync-due-at`` has come goes back to its work queue, each copy before the ack; one
not yet due stays until its time; a worker whose delay queues were never declared says so and
goes on consuming; every copy put in a delay queue is stamped with when it is due.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from kombu import Connection, Producer, Queue

from broker.headers import DUE_AT, RECHECK
from broker.topology import delay_queue_name
from tests.conftest import wait_until
from tests.workers.conftest import PAYMENTS, SCHEDULE, depth
from workers.runtime.failures import Failure, destination
from workers.runtime.messages import Delivery, MessageConsumer
from workers.sync.middleware import Recheck


def stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class Pumping(MessageConsumer):
    has_delay_queues = True
    pump_tick_seconds = 0.05


def running(broker: Connection, queue_name: str, kind: type[MessageConsumer], handled: list[str]):
    def handle(delivery: Delivery) -> Failure | None:
        handled.append(delivery.body["name"])
        return None

    queue = Queue(queue_name, PAYMENTS, routing_key="payment.#")
    consumer = kind(broker.clone(), [queue], handle, name="writeback", retry=SCHEDULE)
    thread = threading.Thread(target=consumer.run, kwargs={"safety_interval": 0.01}, daemon=True)
    thread.start()
    return consumer, thread


def test_each_delayed_message_comes_back_when_it_is_due_and_not_before(memory_broker, memory_queue_name):
    broker, queue_name = memory_broker, memory_queue_name
    now = datetime.now(UTC)
    producer = Producer(broker.default_channel)

    def delayed(delay: int, name: str, due: datetime | None) -> None:
        headers = {} if due is None else {DUE_AT: stamp(due)}
        producer.publish(
            {"name": name}, exchange="", routing_key=delay_queue_name(queue_name, delay), headers=headers
        )

    delayed(1, "due-a-while-ago", now - timedelta(minutes=5))
    delayed(1, "due-now", now)
    delayed(5, "unstamped", None)  # put there by hand, say: nothing to wait for
    delayed(5, "due-in-a-second", now + timedelta(seconds=1))
    delayed(30, "due-in-an-hour", now + timedelta(hours=1))
    handled: list[str] = []
    consumer, thread = running(broker, queue_name, Pumping, handled)
    try:
        wait_until(lambda: len(handled) >= 3, timeout=10, message="the due messages handled")
        assert "due-in-a-second" not in handled, "a message is not moved before its time"
        wait_until(lambda: len(handled) == 4, timeout=10, message="the next one, once due")
        came_back = datetime.now(UTC)
    finally:
        consumer.stop()
        thread.join(10)
        consumer.close()
    assert sorted(handled) == ["due-a-while-ago", "due-in-a-second", "due-now", "unstamped"]
    assert came_back >= now + timedelta(seconds=1)
    assert depth(broker, delay_queue_name(queue_name, 30)) == 1, "the hour-long delay is still waiting"


def test_a_worker_whose_delay_queues_are_missing_says_so_and_goes_on(memory_broker):
    broker = memory_broker
    queue_name = f"provisioning-{uuid.uuid4().hex[:8]}"  # its 5 s delay queue never declared
    channel = broker.default_channel
    for delay in (1, 30):
        Queue(delay_queue_name(queue_name, delay), channel=channel).declare()
    Queue(queue_name, PAYMENTS, routing_key="payment.#", channel=channel).declare()
    Producer(channel).publish({"name": "work"}, exchange=PAYMENTS, routing_key="payment.post")
    handled: list[str] = []
    consumer, thread = running(broker, queue_name, Pumping, handled)
    try:
        wait_until(lambda: handled == ["work"], timeout=10, message="the work queue consumed")
        generation = consumer.generation
        ticks = consumer._pump_next
        wait_until(
            lambda: consumer._pump_next > ticks + 0.2, timeout=10, message="a few more ticks of the pump"
        )
        assert consumer.generation == generation, "a missing delay queue cost the connection"
    finally:
        consumer.stop()
        thread.join(10)
        consumer.close()
    assert sorted(consumer._pumped) == [delay_queue_name(queue_name, d) for d in (1, 30)]


def test_every_copy_put_in_a_delay_queue_says_when_it_is_due():
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    failure = Failure("intacct_unavailable", RuntimeError("503"), transient=True)
    target = destination(
        failure, queue="sync.ar", routing_key="ar.invoice", headers={}, now=now, policy=SCHEDULE
    )
    assert target.queue == "sync.ar.delay.1s" and target.headers[DUE_AT] == "2026-12-07T12:00:01Z"

    sent: list[dict[str, Any]] = []

    class Recorder:
        def publish(self, body: Any, **kwargs: Any) -> None:
            sent.append(kwargs)

    class Message:
        body, headers, content_type, content_encoding, properties = b"{}", {}, "application/json", "utf-8", {}

    class Event:
        queue, message = "sync.ar", Message()

    class Outcome:
        recheck = [Event()]

    before = datetime.now(UTC)
    Recheck(delay=2).before_settle(None, Outcome(), Recorder())  # type: ignore[arg-type]
    due = datetime.fromisoformat(sent[0]["headers"][DUE_AT].replace("Z", "+00:00"))
    assert sent[0]["routing_key"] == "sync.ar.delay.2s" and sent[0]["headers"][RECHECK] == 1
    assert before + timedelta(seconds=2) <= due <= datetime.now(UTC) + timedelta(seconds=2)
