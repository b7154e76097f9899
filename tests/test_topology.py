"""The topology: declared idempotently, routed as the brief says, retries and dead letters work."""

from __future__ import annotations

import pytest
from kombu import Connection, Consumer

from broker.topology import (
    ARCHIVE_STREAM_NAME,
    DEAD_LETTER_QUEUE_NAME,
    RETRY_DELAYS_SECONDS,
    TopologyMismatch,
    build_topology,
    declare_topology,
    delay_queue_name,
)
from tests.conftest import wait_until

pytestmark = pytest.mark.broker


def test_the_brief_names_are_all_there():
    topology = build_topology("7D")
    names = {q.name for q in topology.queues}
    assert {
        "sync.gl",
        "sync.ar",
        "sync.cm",
        "sync.company",
        "provisioning",
        "dead-letter",
        "intacct.events.archive",
    } <= names
    exchanges = {e.name: e.type for e in topology.exchanges}
    assert exchanges["intacct.events"] == exchanges["flexpoint.connections"] == "topic"
    for queue in topology.work_queues:
        assert queue.queue_arguments["x-queue-type"] == "quorum"
        for delay in RETRY_DELAYS_SECONDS:
            assert delay_queue_name(queue.name, delay) in names
    provisioning = topology.queue("provisioning")
    assert sorted(b.routing_key for b in provisioning.bindings) == [
        "connection.connect",
        "connection.disconnect",
    ]
    archive = topology.queue(ARCHIVE_STREAM_NAME)
    assert archive.queue_arguments == {"x-queue-type": "stream", "x-max-age": "7D"}
    assert build_topology("36h").queue(ARCHIVE_STREAM_NAME).queue_arguments["x-max-age"] == "36h"


def test_declaring_twice_changes_nothing(amqp_url, declared_topology, broker):
    broker.publish("intacct.events", "cm.deposits.update", b"{}")
    with Connection(amqp_url) as connection:
        declare_topology(connection, declared_topology)
    assert wait_until(lambda: broker.depth("sync.cm") == 1, message="the message to stay in sync.cm")


def test_a_changed_argument_is_reported_with_what_to_do(amqp_url, declared_topology):
    with Connection(amqp_url) as connection, pytest.raises(TopologyMismatch, match="policy"):
        declare_topology(connection, build_topology("1D"))


def test_a_delay_queue_keeps_its_messages_until_a_worker_moves_them(broker):
    """No TTL and no dead-lettering on a delay queue (RabbitMQ 3.10's quorum queues can stop
    dead-lettering after a failover): the workers' delay pump moves what is due."""
    for queue in build_topology("7D").queues:
        if ".delay." in queue.name:
            assert queue.queue_arguments == {"x-queue-type": "quorum"}, queue.name
    broker.publish("", delay_queue_name("sync.gl", 2), b'{"n": 1}')
    wait_until(lambda: broker.depth(delay_queue_name("sync.gl", 2)) == 1, message="the delayed message")


def test_a_rejected_message_is_dead_lettered_with_its_origin(broker):
    broker.publish("intacct.events", "ar.invoices.update", b'{"poison": true}')
    message = wait_until(lambda: broker.channel.basic_get(queue="sync.ar", no_ack=False), message="a message")
    broker.channel.basic_reject(message.delivery_tag, requeue=False)
    wait_until(lambda: broker.depth(DEAD_LETTER_QUEUE_NAME) == 1, message="the dead letter")
    dead = broker.get(DEAD_LETTER_QUEUE_NAME)
    death = dead.properties["application_headers"]["x-death"][0]
    assert death["queue"] == "sync.ar"
    assert death["reason"] == "rejected"


def test_every_event_is_also_kept_in_the_archive_stream(amqp_url, broker):
    broker.publish(
        "intacct.events", "company.entities.update", b'{"archived": "yes"}', message_id="archive-probe"
    )
    seen: list[str] = []
    with Connection(amqp_url) as connection:
        channel = connection.channel()
        channel.basic_qos(0, 100, False)

        def on_message(body, message):
            seen.append(message.properties.get("message_id"))
            message.ack()

        queue = build_topology().queue(ARCHIVE_STREAM_NAME)
        queue.consumer_arguments = {"x-stream-offset": "first"}
        with Consumer(channel, [queue], callbacks=[on_message], accept=None):

            def drained() -> bool:
                # The stream holds every earlier test's events too: read them in bulk.
                for _ in range(500):
                    try:
                        connection.drain_events(timeout=0.5)
                    except TimeoutError:
                        break
                return "archive-probe" in seen

            wait_until(drained, timeout=20, message="the event in the archive")
