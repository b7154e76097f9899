"""flexsync connect / disconnect publish messages the provisioning worker accepts."""

from __future__ import annotations

import json
import uuid

import pytest
from click.testing import CliRunner
from kombu import Exchange, Queue
from marshmallow import ValidationError

from cli.ops import connect, disconnect
from processes.parts import ProcessParts
from tests.conftest import wait_until
from workers.connections.messages import load_message

pytestmark = pytest.mark.broker


@pytest.fixture
def listener(broker, declared_topology):
    """A queue of our own bound to flexpoint.connections, to see what was published."""
    name = f"test-connections-{uuid.uuid4().hex[:8]}"
    queue = Queue(
        name,
        Exchange("flexpoint.connections", type="topic", durable=True),
        routing_key="connection.*",
        auto_delete=True,
    )
    queue.bind(broker.channel).declare()
    yield name
    broker.channel.queue_delete(queue=name)


def received(broker, queue: str):
    message = wait_until(lambda: broker.get(queue), message="a connection message")
    return message.delivery_info["routing_key"], json.loads(message.body), message


def test_connect_publishes_a_valid_connect_message_with_a_hidden_password(settings, broker, listener):
    result = CliRunner().invoke(
        connect,
        [
            "--account-id",
            "acct-1",
            "--company-id",
            "ACME-CO",
            "--user-id",
            "ws_flexpoint",
            "--password-prompt",
        ],
        input="s3cret-Pa55\n",
        obj={"settings": settings},
    )
    assert result.exit_code == 0, result.output
    assert "s3cret-Pa55" not in result.output
    routing_key, body, message = received(broker, listener)
    assert routing_key == "connection.connect"
    loaded = load_message(routing_key, body)
    assert loaded["accountId"] == "acct-1" and loaded["companyId"] == "ACME-CO" and loaded["entityId"] is None
    assert loaded["userPassword"] == "s3cret-Pa55"
    assert str(uuid.UUID(loaded["connectionId"])) == loaded["connectionId"]
    assert (
        message.properties["message_id"] == loaded["messageId"] and message.properties["delivery_mode"] == 2
    )
    assert loaded["connectionId"] in result.stdout


def test_disconnect_takes_the_account_from_the_store_and_asks_first(settings, broker, listener):
    store = ProcessParts(settings, process="test").connections
    record = store.save(
        connection_id=str(uuid.uuid4()),
        account_id="acct-9",
        company_id="ACME-CO",
        entity_id=None,
        user_id="ws_flexpoint",
        state="connected",
    )
    refused = CliRunner().invoke(disconnect, [record.connection_id], input="n\n", obj={"settings": settings})
    assert refused.exit_code == 1 and "Disconnect connection" in refused.output
    assert broker.get(listener) is None

    result = CliRunner().invoke(disconnect, [record.connection_id, "--yes"], obj={"settings": settings})
    assert result.exit_code == 0, result.output
    routing_key, body, _ = received(broker, listener)
    loaded = load_message(routing_key, body)
    assert routing_key == "connection.disconnect"
    assert loaded["accountId"] == "acct-9" and loaded["connectionId"] == record.connection_id
    assert loaded["reason"] == "requested by operations"


def test_disconnect_of_an_unknown_connection_says_what_to_do(settings, broker, listener):
    result = CliRunner().invoke(disconnect, ["nope", "--yes"], obj={"settings": settings})
    assert result.exit_code == 1 and "--account-id" in result.output
    assert broker.get(listener) is None
    given = CliRunner().invoke(
        disconnect,
        ["nope", "--account-id", "acct-2", "--reason", "customer left", "--yes"],
        obj={"settings": settings},
    )
    assert given.exit_code == 0, given.output
    _, body, _ = received(broker, listener)
    assert body["reason"] == "customer left" and body["accountId"] == "acct-2"


@pytest.mark.parametrize("routing_key", ["connection.connect", "connection.disconnect"])
@pytest.mark.parametrize("account", ["../other", "a/b", "a?b=1", "a b", "a%2Fb", "acct\n", "é", "x" * 65, ""])
def test_a_connection_message_whose_account_id_is_no_flexpoint_path_id_is_refused(routing_key, account):
    # The account id goes into FlexPoint's URL paths: the pattern FlexPoint's API and the
    # payment messages use, checked when the message is loaded rather than at the first call.
    body = {
        "messageId": "m-1",
        "accountId": account,
        "connectionId": str(uuid.uuid4()),
        "requestedAt": "2026-12-01T10:00:00Z",
        "companyId": "ACME-CO",
        "userId": "ws_flexpoint",
        "reason": "closed",
    }
    with pytest.raises(ValidationError) as refused:
        load_message(routing_key, body)
    assert set(refused.value.normalized_messages()) == {"accountId"}
    assert load_message(routing_key, {**body, "accountId": "A_b-9" + "x" * 59})["accountId"].startswith(
        "A_b-9"
    )
