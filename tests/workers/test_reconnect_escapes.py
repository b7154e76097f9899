"""R7: what escaped kombu's ConsumerMixin.run after a reconnect and killed a worker with code 1.

Two broker failures are not in the transport's ``connection_errors``/``channel_errors`` that the
mixin reconnects on: kombu's own ``OperationalError``, raised by ``conn.default_channel`` when the
connection just made dropped again and did not come back within ``connect_timeout``, and amqp's
``MessageNacked``, raised by a confirmed publish (a retry) the broker refused. Each is injected at
the point it comes from, on kombu's in-memory transport; the worker must reconnect and go on.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import amqp.exceptions
import kombu.exceptions
import pytest
import structlog.testing
from kombu import Connection, Exchange, Producer, Queue

from broker.topology import DEAD_LETTER_QUEUE_NAME, RETRY_DELAYS_SECONDS, delay_queue_name
from tests.conftest import wait_until
from workers.runtime.failures import Failure
from workers.runtime.messages import Delivery, MessageConsumer
from workers.runtime.middleware import Middleware
from workers.runtime.process import run_worker

PAYMENTS = Exchange("flexpoint.payments", "topic")


@pytest.fixture
def queue_name() -> str:
    return f"writeback-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def broker(queue_name) -> Iterator[Connection]:
    with Connection("memory://") as connection:
        channel = connection.channel()
        for name in (
            DEAD_LETTER_QUEUE_NAME,
            *(delay_queue_name(queue_name, d) for d in RETRY_DELAYS_SECONDS),
        ):
            Queue(name, channel=channel).declare()
        Queue(queue_name, PAYMENTS, routing_key="payment.#", channel=channel).declare()
        yield connection


def publish(broker: Connection, body: Any) -> None:
    Producer(broker.default_channel).publish(body, exchange=PAYMENTS, routing_key="payment.posted")


class Consuming:
    """The consumer's ``run`` on a thread, remembering what ended it."""

    def __init__(self, consumer: MessageConsumer) -> None:
        self.consumer = consumer
        self.ended: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.consumer.run(safety_interval=0.01)
        except BaseException as exc:  # the worker process would exit with it
            self.ended = exc

    def stop(self) -> None:
        self.consumer.stop()
        self.thread.join(10)
        self.consumer.close()


class DroppedRightAfterConnecting(Connection):
    """A connection whose first channel cannot be had: what kombu raises then."""

    @property
    def default_channel(self) -> Any:
        raise kombu.exceptions.OperationalError("[Errno 104] Connection reset by peer")


class DropOnce(Middleware):
    """The connection drops when a message whose body says ``drop`` arrives (kombu reconnects)."""

    dropped = False

    def before_receive(self, message: Any, body: Any) -> Any:
        if body.get("drop") and not self.dropped:
            self.dropped = True
            raise amqp.exceptions.ConnectionError("the connection dropped")
        return body


def test_a_connection_lost_again_right_after_the_reconnect_is_waited_out_not_fatal(broker, queue_name):
    handled: list[Any] = []

    def handle(delivery: Delivery) -> Failure | None:
        handled.append(delivery.body)
        return None

    queue = Queue(queue_name, PAYMENTS, routing_key="payment.#")
    consumer = MessageConsumer(broker.clone(), [queue], handle, name="writeback", middleware=[DropOnce()])
    made: list[Connection] = []
    create = consumer.create_connection

    def create_connection() -> Connection:
        connection = create()
        made.append(connection)
        if len(made) == 2:  # the first reconnect: dropped again before its channel was opened
            connection.__class__ = DroppedRightAfterConnecting
        return connection

    consumer.create_connection = create_connection  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as logs:
        worker = Consuming(consumer)
        try:
            publish(broker, {"drop": True})
            wait_until(lambda: len(made) >= 3 or worker.ended, timeout=15, message="a second reconnect")
            publish(broker, {"after": True})
            wait_until(lambda: {"after": True} in handled or worker.ended, timeout=15)
        finally:
            worker.stop()
    assert worker.ended is None, f"the worker died of {worker.ended!r}"
    assert {"after": True} in handled
    lost = [entry for entry in logs if entry["event"] == "writeback_broker_lost"]
    assert lost and lost[0]["error"] == "OperationalError"


def test_a_retry_the_broker_nacks_reconnects_instead_of_killing_the_worker(broker, queue_name):
    handled: list[Any] = []

    class NackedOnce(Middleware):
        nacked = False

        def before_route(self, message: Any, target: Any, body: Any) -> Any:
            if not self.nacked:  # the confirmed publish to the delay queue is refused
                self.nacked = True
                raise amqp.exceptions.MessageNacked()
            return body

    def handle(delivery: Delivery) -> Failure | None:
        handled.append(delivery.body)
        if delivery.body.get("fail"):
            return Failure("flex_point_unavailable", RuntimeError("503"), transient=True)
        return None

    queue = Queue(queue_name, PAYMENTS, routing_key="payment.#")
    consumer = MessageConsumer(broker.clone(), [queue], handle, name="writeback", middleware=[NackedOnce()])
    worker = Consuming(consumer)
    try:
        publish(broker, {"fail": True})
        wait_until(lambda: consumer.generation >= 2 or worker.ended, timeout=15, message="a reconnect")
        publish(broker, {"after": True})
        wait_until(lambda: {"after": True} in handled or worker.ended, timeout=15)
    finally:
        worker.stop()
    assert worker.ended is None, f"the worker died of {worker.ended!r}"
    assert {"after": True} in handled


class Failing:
    def run(self) -> None:
        raise RuntimeError("a bug")

    def stop(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_worker_that_ends_by_an_exception_says_why_in_its_log():
    with structlog.testing.capture_logs() as logs, pytest.raises(RuntimeError):
        run_worker("sync", Failing())
    events = [entry["event"] for entry in logs]
    assert events == ["sync_started", "sync_failed", "sync_stopped"]
    assert logs[1]["log_level"] == "error" and logs[1].get("exc_info")
