"""The sandbox's tour (``./dev run``) and what it stands on: its settings, its bounded waits, the
messages it publishes as FlexPoint, and the confirmed publisher it shares with ``flexpoint pay``."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from kombu import Connection, Exchange, Queue

from sandbox.amqp import NotRouted, PublishFailed, publish_json
from sandbox.tour import connect_message, disconnect_message, queue_depths
from sandbox.tour_support import TourError, TourSettings, wait_for
from tests.conftest import free_port


def test_settings_follow_the_service_environment():
    settings = TourSettings.from_env(
        {
            "PORT": "8123",
            "INTACCT_API_URL": "http://127.0.0.1:9191/ia/api/v1",
            "FLEXPOINT_API_URL": "http://127.0.0.1:9190/",
            "FLEXPOINT_API_TOKEN": "tok-123456",
            "AMQP_URL": "amqp://u:p@broker:5672/%2F",
        }
    )
    assert settings.receiver_url == "http://127.0.0.1:8123"
    assert settings.public_base_url == "http://127.0.0.1:8123"  # PUBLIC_BASE_URL unset
    assert settings.intacct_admin == "http://127.0.0.1:9191/sandbox"
    assert (settings.intacct_port, settings.flexpoint_port) == (9191, 9190)
    assert settings.flexpoint_url == "http://127.0.0.1:9190"
    assert "tok-123456" not in repr(settings) and "u:p" not in repr(settings)


def test_settings_default_to_the_sandbox_env_values():
    settings = TourSettings.from_env({})
    assert settings.intacct_admin == "http://127.0.0.1:8091/sandbox"
    assert settings.flexpoint_url == "http://127.0.0.1:8090"
    assert settings.receiver_url == "http://127.0.0.1:8000"


def test_wait_for_returns_the_first_truthy_value():
    answers = iter([None, 0, {"state": "connected"}])
    assert wait_for(lambda: next(answers), timeout=5, what="status", interval=0.001) == {"state": "connected"}


def test_wait_for_gives_up_at_its_deadline():
    started = time.monotonic()
    with pytest.raises(TourError, match="no status within"):
        wait_for(lambda: None, timeout=0.2, what="status", interval=0.05)
    assert 0.2 <= time.monotonic() - started < 2


def test_wait_for_stops_when_the_processes_died():
    with pytest.raises(TourError, match="processes stopped"):
        wait_for(lambda: None, timeout=30, what="status", alive=lambda: False)


def test_wait_for_ends_early_when_asked_to_stop():
    stop = threading.Event()
    stop.set()
    with pytest.raises(TourError, match="stopped while waiting"):
        wait_for(lambda: None, timeout=30, what="status", stop=stop)


def test_connection_messages_are_what_the_service_accepts():
    # The service's own schema (tests may import the service; the sandbox may not).
    from workers.connections.messages import load_message

    connect = connect_message(account="acct", company="CO", user="ws_user", connection_id=str(uuid.uuid4()))
    loaded = load_message("connection.connect", connect)
    assert (loaded["accountId"], loaded["companyId"], loaded["userId"]) == ("acct", "CO", "ws_user")
    assert loaded["entityId"] is None
    disconnect = disconnect_message(account="acct", connection_id=connect["connectionId"], reason="done")
    assert load_message("connection.disconnect", disconnect)["reason"] == "done"


def test_publishing_to_a_closed_port_says_rabbitmq_is_unreachable():
    url = f"amqp://guest:secret-pw@127.0.0.1:{free_port()}/%2F"
    with pytest.raises(PublishFailed, match="unreachable") as raised:
        publish_json(url, "flexpoint.connections", "connection.connect", {"messageId": "m"}, timeout=2)
    assert "secret-pw" not in str(raised.value)


@pytest.mark.broker
def test_a_confirmed_message_reaches_a_bound_queue(amqp_url):
    exchange = Exchange(f"test-tour-{uuid.uuid4().hex[:8]}", type="topic", durable=True)
    with Connection(amqp_url) as connection:
        exchange(connection.default_channel).declare()
        queue = Queue(
            f"test-tour-{uuid.uuid4().hex[:8]}", exchange, routing_key="connection.*", auto_delete=True
        )
        bound = queue(connection.default_channel)
        bound.declare()
        try:
            message = {"messageId": "m-1", "accountId": "a"}
            publish_json(amqp_url, exchange.name, "connection.connect", message)
            # Confirmed means enqueued: the message is there at once, no waiting.
            received = bound.get(no_ack=True)
            assert received is not None
            assert received.payload == message
            assert received.properties["message_id"] == "m-1"
            assert received.properties["delivery_mode"] == 2
        finally:
            exchange(connection.default_channel).delete()


@pytest.mark.broker
def test_a_message_no_queue_takes_is_reported_not_routed(amqp_url):
    name = f"test-tour-{uuid.uuid4().hex[:8]}"
    try:
        with pytest.raises(NotRouted, match="no queue is bound"):
            publish_json(amqp_url, name, "connection.connect", {"messageId": "m-2"})
    finally:
        with Connection(amqp_url) as connection:
            Exchange(name, type="topic")(connection.default_channel).delete()


@pytest.mark.broker
def test_queue_depths_count_ready_messages_and_name_missing_queues(amqp_url):
    name = f"test-tour-{uuid.uuid4().hex[:8]}"
    with Connection(amqp_url) as connection:
        queue = Queue(name, auto_delete=False)(connection.default_channel)
        queue.declare()
        try:
            with connection.Producer() as producer:
                for _ in range(2):
                    producer.publish({"n": 1}, routing_key=name, exchange="")
            missing = f"{name}-absent"
            depths = {}

            def counted() -> bool:
                depths.update(queue_depths(amqp_url, (name, missing)))
                return depths[name] == 2

            assert wait_for(counted, timeout=10, what="two ready messages")
            assert depths[missing] is None
        finally:
            queue.delete()
