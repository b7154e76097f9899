"""The confirming publisher against a real RabbitMQ."""

from __future__ import annotations

import contextlib
import time

import pytest
from kombu import Exchange, Queue

from broker.publisher import (
    BrokerUnavailable,
    ConfirmingPublisher,
    PublishError,
    PublishRejected,
    PublishUnroutable,
)
from broker.topology import EVENTS_EXCHANGE
from tests.conftest import wait_until

pytestmark = pytest.mark.broker


@pytest.fixture
def publisher(amqp_url, declared_topology):
    outcomes: list[str] = []
    publisher = ConfirmingPublisher(
        amqp_url, EVENTS_EXCHANGE.name, on_outcome=lambda o, waits: outcomes.extend([o] * len(waits))
    )
    publisher.outcomes = outcomes
    publisher.start(wait=5)
    assert publisher.ready
    yield publisher
    publisher.close()


def test_confirms_are_pipelined_not_one_at_a_time(publisher, broker):
    futures = [publisher.publish("ar.invoices.update", b"{}", message_id=f"m-{i}") for i in range(2000)]
    # All 2000 were handed over before any confirm was awaited; each still gets its own.
    for future in futures:
        future.result(timeout=20)
    assert broker.depth("sync.ar") == 2000
    assert publisher.outcomes.count("ack") == 2000


def test_an_unroutable_message_is_not_reported_as_confirmed(amqp_url, broker):
    with broker.connection.channel() as channel:
        Exchange("flexsync.test.unbound", "topic", durable=False, auto_delete=True)(channel).declare()
    publisher = ConfirmingPublisher(amqp_url, "flexsync.test.unbound")
    publisher.start(wait=5)
    try:
        with pytest.raises(PublishUnroutable):
            publisher.publish_and_wait("nobody.listens", b"{}", timeout=5, message_id="lost?")
    finally:
        publisher.close()


def test_without_a_broker_publishing_fails_at_once():
    publisher = ConfirmingPublisher("amqp://guest:guest@127.0.0.1:1/%2F", "intacct.events")
    publisher.start(wait=0.5)
    try:
        assert not publisher.ready
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable):
            publisher.publish_and_wait("ar.invoices.update", b"{}", timeout=1.5, message_id="x")
        assert time.monotonic() - started < 0.5
    finally:
        publisher.close()


def test_recovers_by_itself_after_a_channel_error(amqp_url, broker):
    """Publishing to a missing exchange closes the channel; once it exists, publishing works again."""
    name = "flexsync.test.late-exchange"
    publisher = ConfirmingPublisher(amqp_url, name, reconnect_delays=(0.05, 0.1))
    publisher.start(wait=5)
    try:
        with pytest.raises(BrokerUnavailable):
            publisher.publish_and_wait("k", b"{}", timeout=5, message_id="first")
        with broker.connection.channel() as channel:
            exchange = Exchange(name, "topic", durable=False, auto_delete=False)
            exchange(channel).declare()
            Queue("flexsync.test.late-queue", exchange, routing_key="#", auto_delete=False)(channel).declare()

        def published() -> bool:
            try:
                publisher.publish_and_wait("k", b"{}", timeout=2, message_id="again")
                return True
            except BrokerUnavailable:
                return False

        wait_until(published, timeout=15, message="the publisher to reconnect")
        assert broker.depth("flexsync.test.late-queue") == 1
    finally:
        publisher.close()
        with broker.connection.channel() as channel:
            channel.queue_delete("flexsync.test.late-queue")
            channel.exchange_delete(name)


def test_close_waits_for_outstanding_confirms(publisher, broker):
    futures = [publisher.publish("gl.gl-accounts.update", b"{}", message_id=f"c-{i}") for i in range(500)]
    publisher.close()
    assert all(f.done() and f.exception() is None for f in futures)
    assert broker.depth("sync.gl") == 500


def test_moves_to_the_next_node_when_the_first_is_unreachable(amqp_url, declared_topology, broker):
    """AMQP_URL naming two nodes, the first a closed port: the publisher connects to the second."""
    closed = amqp_url.replace("127.0.0.1:5672", "127.0.0.1:1")
    assert closed != amqp_url, "the test expects the broker on 127.0.0.1:5672"
    # A back-off far longer than the deadline: only trying the next node at once can pass.
    publisher = ConfirmingPublisher(f"{closed},{amqp_url}", EVENTS_EXCHANGE.name, reconnect_delays=(30.0,))
    started = time.monotonic()
    publisher.start(wait=5)
    try:
        assert publisher.ready, "never connected to the second node"
        assert time.monotonic() - started < 5
        assert publisher.node == "127.0.0.1:5672"
        publisher.publish_and_wait("ar.invoices.update", b"{}", timeout=5, message_id="via-second")
        assert broker.depth("sync.ar") == 1
    finally:
        publisher.close()


def test_refusals_lasting_a_second_get_a_new_connection(amqp_url, broker):
    """A queue that rejects every publish (nacks): after a second of them the publisher reconnects."""
    name = "flexsync.test.refusing"
    with broker.connection.channel() as channel:
        exchange = Exchange(name, "topic", durable=False, auto_delete=True)
        exchange(channel).declare()
        arguments = {"x-max-length": 0, "x-overflow": "reject-publish"}
        Queue(f"{name}.full", exchange, routing_key="#", auto_delete=True, queue_arguments=arguments)(
            channel
        ).declare()
    lost: list[float] = []
    publisher = ConfirmingPublisher(
        amqp_url, name, reconnect_delays=(0.05,), on_connection_lost=lambda: lost.append(time.monotonic())
    )
    publisher.start(wait=5)
    try:
        started = time.monotonic()
        with pytest.raises(PublishRejected):
            publisher.publish_and_wait("k", b"{}", timeout=5, message_id="refused-0")
        assert not lost, "one refusal is the caller's answer, not a reason to reconnect"

        def refused_then_reconnected() -> bool:
            with contextlib.suppress(PublishError):
                publisher.publish_and_wait("k", b"{}", timeout=2, message_id="refused")
            return bool(lost)

        wait_until(refused_then_reconnected, timeout=10, interval=0.1, message="a reconnect after refusals")
        assert lost[0] - started >= 1.0
        wait_until(lambda: publisher.ready, timeout=5, message="connected again")
    finally:
        publisher.close()


@pytest.mark.parametrize(
    "bad_id",
    ["é" * 150, "a\ud800b"],
    ids=["over-255-utf8-bytes", "lone-surrogate"],
)
def test_a_message_pika_cannot_encode_fails_alone_and_shifts_no_confirm(
    amqp_url, declared_topology, broker, bad_id
):
    """Issue 30 #1: the refused message's tag was counted, so every later confirm went to the
    message before it (a 202 for a message the broker never took), or the loop died."""
    lost: list[int] = []
    publisher = ConfirmingPublisher(amqp_url, EVENTS_EXCHANGE.name, on_connection_lost=lambda: lost.append(1))
    publisher.start(wait=5)
    assert publisher.ready
    try:
        refused = publisher.publish("ar.invoices.update", b"{}", message_id=bad_id)
        with pytest.raises(PublishError):
            refused.result(timeout=5)
        # One at a time: each must be settled by its own confirm, not the next message's.
        for i in range(100):
            publisher.publish_and_wait("ar.invoices.update", b"{}", timeout=5, message_id=f"after-{i}")
        assert broker.depth("sync.ar") == 100
        assert [m.properties["message_id"] for m in broker.take_all("sync.ar")] == [
            f"after-{i}" for i in range(100)
        ]
        assert lost == [] and publisher.ready
    finally:
        publisher.close()
