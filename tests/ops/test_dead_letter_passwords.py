"""Issue 30 #4: a connect message's password never reaches the dead-letter table in clear.

The provisioning worker strips the password from what it parks itself; this is the other way in:
RabbitMQ dead-letters the message on its own when the delivery limit of the quorum queue is
reached (a message that keeps killing its consumer), with the body as FlexPoint sent it.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from broker.topology import (
    CONNECTIONS_EXCHANGE,
    DEAD_LETTER_QUEUE_NAME,
    DELIVERY_LIMIT,
    PROVISIONING_QUEUE_NAME,
)
from store.db import create_engine_for
from store.models import DeadLetterRecord
from workers.connections.messages import CONNECT_ROUTING_KEY
from workers.deadletters.commands import dead
from workers.deadletters.store import PURGED
from workers.deadletters.storer import StoringConsumer

pytestmark = pytest.mark.broker

PASSWORD = "Hunter2-never-in-clear-" + uuid.uuid4().hex[:8]


def _connect_message() -> dict:
    return {
        "messageId": str(uuid.uuid4()),
        "accountId": "acct-1",
        "connectionId": str(uuid.uuid4()),
        "requestedAt": "2026-12-07T10:00:00Z",
        "companyId": "ACME-CO",
        "userId": "xml_user",
        "userPassword": PASSWORD,
    }


def _dead_letter_by_the_delivery_limit(broker) -> None:
    """Take the message and give it back, as a consumer that dies on it would, until RabbitMQ
    itself moves it to the dead-letter queue (more than DELIVERY_LIMIT returns)."""
    deadline = time.monotonic() + 60
    returned = 0
    while broker.depth(DEAD_LETTER_QUEUE_NAME) == 0:
        assert time.monotonic() < deadline, f"not dead-lettered after {returned} returns"
        message = broker.channel.basic_get(queue=PROVISIONING_QUEUE_NAME, no_ack=False)
        if message is None:
            time.sleep(0.05)
            continue
        broker.channel.basic_reject(message.delivery_tag, requeue=True)
        returned += 1
    assert returned > DELIVERY_LIMIT


def _rows(settings) -> list:
    engine = create_engine_for(settings.database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(DeadLetterRecord)).all()
    finally:
        engine.dispose()


def _columns(row) -> str:
    return " ".join(
        value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value) for value in row
    )


def test_a_connect_message_dead_lettered_by_the_broker_keeps_no_password(settings, broker, dead_store):
    message = _connect_message()
    broker.publish(
        CONNECTIONS_EXCHANGE.name,
        CONNECT_ROUTING_KEY,
        json.dumps(message).encode(),
        message_id=message["messageId"],
    )
    _dead_letter_by_the_delivery_limit(broker)

    stored = StoringConsumer.for_url(settings.amqp_url, dead_store, until_idle=0.5).drain()
    assert stored.stored == 1
    rows = _rows(settings)
    assert len(rows) == 1
    row = rows[0]
    assert row.reason == "delivery_limit" and row.original_queue == PROVISIONING_QUEUE_NAME
    assert PASSWORD not in _columns(row)
    body = json.loads(row.body)
    assert "userPassword" not in body and "userPasswordSealed" not in body
    assert body["userId"] == "xml_user"  # the rest of the message is kept for a replay

    shown = CliRunner().invoke(dead, ["show", row.letter_id], obj={"settings": settings})
    assert shown.exit_code == 0, shown.output
    assert row.letter_id in shown.output and "xml_user" in shown.output
    assert PASSWORD not in shown.output


def test_a_purge_blanks_the_body(settings, broker, dead_store):
    message = {**_connect_message(), "userPassword": None}
    broker.publish(
        CONNECTIONS_EXCHANGE.name,
        CONNECT_ROUTING_KEY,
        json.dumps(message).encode(),
        message_id=message["messageId"],
    )
    _dead_letter_by_the_delivery_limit(broker)
    StoringConsumer.for_url(settings.amqp_url, dead_store, until_idle=0.5).drain()
    (letter_id,) = [row.letter_id for row in _rows(settings)]
    assert dead_store.settle([letter_id], PURGED) == 1
    (row,) = _rows(settings)
    assert row.state == PURGED and row.body == b""
    assert message["connectionId"] not in row.body.decode()
    # Still listed for the record, with what it was and why.
    assert row.reason == "delivery_limit" and row.message_id == message["messageId"]


def test_letters_stored_before_the_fix_lose_their_password(settings, dead_store):
    from datetime import UTC, datetime

    clear = json.dumps(_connect_message()).encode()
    other = json.dumps({"eventId": "e-1", "note": "userPassword in text, not a field"}).encode()
    now = datetime.now(UTC)
    base = {
        "message_id": "m",
        "connection_id": None,
        "resource": None,
        "reason": "delivery_limit",
        "exception": None,
        "attempts": None,
        "original_routing_key": CONNECT_ROUTING_KEY,
        "failed_at": now,
        "stored_at": now,
        "headers": "{}",
        "properties": "{}",
        "state": "stored",
    }
    dead_store.add_many(
        [
            {**base, "letter_id": "a" * 12, "original_queue": PROVISIONING_QUEUE_NAME, "body": clear},
            {**base, "letter_id": "b" * 12, "original_queue": "sync.ar", "body": other},
        ]
    )
    assert dead_store.strip_passwords() == 1
    assert dead_store.strip_passwords() == 0  # nothing left to do
    bodies = {row.letter_id: row.body for row in _rows(settings)}
    assert PASSWORD.encode() not in bodies["a" * 12] and b"xml_user" in bodies["a" * 12]
    assert bodies["b" * 12] == other
