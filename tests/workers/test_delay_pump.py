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

from broker.headers import ATTEMPTS, DUE_AT, EXCEPTION, REASON, RECHECK
from broker.topology import DEAD_LETTER_QUEUE_NAME, delay_queue_name
from tests.conftest import wait_until
from tests.workers.conftest import PAYMENTS, SCHEDULE, depth
from workers.runtime.failures import Failure, destination, where_it_exists
from workers.runtime.messages import Delivery, MessageConsumer
from workers.sync.middleware import Recheck


def stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class Pumping(MessageConsumer):
    has_delay_queues = True
    pump_tick_seconds = 0.05


def running(
    broker: Connection, queue_name: str, kind: type[MessageConsumer], handled: list[str], handle=None
):
    def record(delivery: Delivery) -> Failure | None:
        handled.append(delivery.body["name"])
        return None

    handle = handle or record
    queue = Queue(queue_name, PAYMENTS, routing_key="payment.#")
    consumer = kind(broker.clone(), [queue], handle, name="writeback", retry=SCHEDULE)
    thread = threading.Thread(target=consumer.run, kwargs={"safety_interval": 0.01}, daemon=True)
    thread.start()
    return consumer, thread


def without_its_5s_delay_queue(broker: Connection) -> str:
    """A work queue of PAYMENTS whose 1 s and 30 s delay queues are declared, not its 5 s one."""
    queue_name = f"provisioning-{uuid.uuid4().hex[:8]}"
    channel = broker.default_channel
    for delay in (1, 30):
        Queue(delay_queue_name(queue_name, delay), channel=channel).declare()
    Queue(queue_name, PAYMENTS, routing_key="payment.#", channel=channel).declare()
    return queue_name


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
    queue_name = without_its_5s_delay_queue(broker)
    channel = broker.default_channel
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


def test_a_retry_whose_delay_queue_is_missing_waits_its_time_in_one_that_exists(memory_broker):
    broker = memory_broker
    queue_name = without_its_5s_delay_queue(broker)
    channel = broker.default_channel
    tries: list[datetime] = []

    def handle(delivery: Delivery) -> Failure | None:
        tries.append(datetime.now(UTC))
        if len(tries) <= 2:  # the second failure is meant for the missing 5 s queue
            return Failure("intacct_unavailable", RuntimeError("503"), transient=True)
        return None

    Producer(channel).publish({"name": "work"}, exchange=PAYMENTS, routing_key="payment.post")
    consumer, thread = running(broker, queue_name, Pumping, [], handle)
    try:
        wait_until(lambda: len(tries) == 3, timeout=20, message="the third try, after the 5 s wait")
    finally:
        consumer.stop()
        thread.join(10)
        consumer.close()
    # Waited in the 1 s queue, but as long as the missing 5 s queue would have held it.
    assert tries[2] - tries[1] >= timedelta(seconds=5)
    assert depth(broker, queue_name) == 0 and depth(broker, DEAD_LETTER_QUEUE_NAME) == 0


def test_a_copy_goes_to_the_nearest_delay_queue_that_exists_or_to_the_dead_letters_saying_why():
    failure = Failure("intacct_unavailable", RuntimeError("503"), transient=True)
    meant = destination(
        failure, queue="sync.ar", routing_key="ar.invoice", headers={ATTEMPTS: 1}, policy=SCHEDULE
    )
    assert meant.queue == "sync.ar.delay.5s"
    queues = {d: delay_queue_name("sync.ar", d) for d in SCHEDULE.delays}

    def where(*existing: int):
        return where_it_exists(meant, [queues[d] for d in existing], SCHEDULE.delays)

    assert where(1, 5, 30) is meant
    assert where(1, 30).queue == queues[1]  # the longest not longer than the one meant
    assert where(30).queue == queues[30]  # else the shortest there is
    assert where(1, 30).headers == meant.headers and not where(30).dead
    dead = where()
    assert dead.dead and dead.queue == DEAD_LETTER_QUEUE_NAME
    assert dead.headers[REASON] == "delay_queue_missing"
    assert (
        "FLEXSYNC_RETRY_DELAYS" in dead.headers[EXCEPTION] and dead.headers[DUE_AT] == meant.headers[DUE_AT]
    )
    gone = destination(Failure("mapping_error", ValueError("x"), transient=False), queue="sync.ar",
                       routing_key="ar.invoice", headers={}, policy=SCHEDULE)  # fmt: skip
    assert where_it_exists(gone, [], SCHEDULE.delays) is gone


def test_every_copy_put_in_a_delay_queue_says_when_it_is_due():
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    failure = Failure("intacct_unavailable", RuntimeError("503"), transient=True)
    target = destination(
        failure, queue="sync.ar", routing_key="ar.invoice", headers={}, now=now, policy=SCHEDULE
    )
    assert target.queue == "sync.ar.delay.1s" and target.headers[DUE_AT] == "2026-12-07T12:00:01Z"

    before = datetime.now(UTC)
    (sent,) = rechecked(Recheck(delay=2))
    due = datetime.fromisoformat(sent["headers"][DUE_AT].replace("Z", "+00:00"))
    assert sent["routing_key"] == "sync.ar.delay.2s" and sent["headers"][RECHECK] == 1
    assert before + timedelta(seconds=2) <= due <= datetime.now(UTC) + timedelta(seconds=2)


def test_a_recheck_goes_only_to_a_delay_queue_the_consumer_found():
    def found(*delays: int):
        return lambda: {delay_queue_name("sync.ar", d) for d in delays}

    (sent,) = rechecked(Recheck(2, existing=found(2, 10), delays=(2, 10, 60)))
    assert sent["routing_key"] == "sync.ar.delay.2s"
    (sent,) = rechecked(Recheck(2, existing=found(10, 60), delays=(2, 10, 60)))
    assert sent["routing_key"] == "sync.ar.delay.10s"  # waits there until its own 2 s are up
    due = datetime.fromisoformat(sent["headers"][DUE_AT].replace("Z", "+00:00"))
    assert due <= datetime.now(UTC) + timedelta(seconds=2)
    assert rechecked(Recheck(2, existing=found(), delays=(2, 10, 60))) == []


def rechecked(recheck: Recheck) -> list[dict[str, Any]]:
    """What ``recheck`` publishes for one event of ``sync.ar`` to look at again."""
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

    recheck.before_settle(None, Outcome(), Recorder())  # type: ignore[arg-type]
    return sent
