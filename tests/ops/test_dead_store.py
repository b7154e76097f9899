"""The storing consumer: every dead letter lands in the table once, even when it is killed mid-way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.exc import OperationalError

from broker.topology import DEAD_LETTER_QUEUE_NAME
from tests.conftest import wait_until
from tests.ops.conftest import envelope
from workers.deadletters.commands import dead
from workers.deadletters.letters import read_letter
from workers.deadletters.store import LetterQuery
from workers.deadletters.storer import StoringConsumer, row_of
from workers.runtime.failures import Failure, destination
from workers.runtime.process import InBackground

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parents[2]


def park_many(publisher, count: int) -> list[str]:
    """``count`` dead letters published with confirms, as the workers park them."""
    connection = str(uuid.uuid4())
    ids, futures = [], []
    for n in range(count):
        body = envelope(connection, "invoices", str(n))
        target = destination(
            Failure("mapping_error", ValueError(f"cannot map {n}"), transient=False),
            queue="sync.ar",
            routing_key="ar.invoices.update",
            headers=None,
        )
        futures.append(
            publisher.publish(
                DEAD_LETTER_QUEUE_NAME,
                json.dumps(body).encode(),
                message_id=body["eventId"],
                headers=target.headers,
            )
        )
        ids.append(body["eventId"])
    for future in futures:
        future.result(timeout=30)
    return ids


def test_a_storing_consumer_killed_mid_way_loses_nothing_and_stores_each_letter_once(
    settings, broker, publisher, dead_store
):
    parked = park_many(publisher, 3000)
    wait_until(lambda: broker.depth(DEAD_LETTER_QUEUE_NAME) == 3000, message="3000 dead letters")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "FLEXSYNC_ENV": "test",
        "AMQP_URL": settings.amqp_url,
        "DATABASE_URL": settings.database_url,
        "FLEXSYNC_SECRET_KEY": ",".join(settings.flexsync_secret_key),
        "LOG_FORMAT": "json",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "dead", "store", "--batch", "7"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: dead_store.count(LetterQuery()) >= 300, timeout=60, message="the first letters stored"
        )
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    stored_when_killed = dead_store.count(LetterQuery())
    assert stored_when_killed < 3000, "killed too late to show anything"

    result = CliRunner().invoke(dead, ["store", "--once"], obj={"settings": settings})
    assert result.exit_code == 0, result.output
    rows = dead_store.find(LetterQuery())
    assert sorted(row.message_id for row in rows) == sorted(parked)
    assert len({row.letter_id for row in rows}) == 3000
    assert broker.depth(DEAD_LETTER_QUEUE_NAME) == 0


def test_a_redelivered_letter_is_stored_once(settings, broker, publisher, dead_store, amqp_url):
    [message_id] = park_many(publisher, 1)
    wait_until(lambda: broker.depth(DEAD_LETTER_QUEUE_NAME) == 1, message="the dead letter")
    # Seen once by a consumer that died before its ack: the same letter, stored already.
    message = broker.channel.basic_get(queue=DEAD_LETTER_QUEUE_NAME)
    letter = read_letter(type("P", (), {"headers": message.headers, **message.properties})(), message.body)
    assert dead_store.add_many([row_of(letter, datetime.now(UTC))]) == 1
    broker.channel.basic_reject(message.delivery_tag, requeue=True)
    wait_until(lambda: broker.depth(DEAD_LETTER_QUEUE_NAME) == 1, message="the redelivery")

    outcome = StoringConsumer.for_url(amqp_url, dead_store, until_idle=0.3).drain()
    assert (outcome.received, outcome.stored, outcome.duplicates) == (1, 0, 1)
    assert [row.message_id for row in dead_store.find(LetterQuery())] == [message_id]
    assert broker.depth(DEAD_LETTER_QUEUE_NAME) == 0


class _RefusingStore:
    """The real table behind a switch: while ``refusing`` is set, every commit fails (a database
    away); ``refused`` is set each time one was refused."""

    def __init__(self, store) -> None:
        self._store = store
        self.refusing = threading.Event()
        self.refused = threading.Event()

    def add_many(self, rows):
        if self.refusing.is_set():
            self.refused.set()
            raise OperationalError("INSERT", {}, Exception("database unavailable"))
        return self._store.add_many(rows)


def test_the_running_storer_stores_letters_as_they_arrive_and_acks_only_what_was_committed(
    settings, broker, publisher, dead_store
):
    refusing = _RefusingStore(dead_store)
    refusing.refusing.set()
    storer = StoringConsumer.for_url(settings.amqp_url, refusing, retry_every=0.2)  # type: ignore[arg-type]
    running = InBackground(storer, "test-dead-letter-storer")
    running.start()
    try:
        first = park_many(publisher, 3)
        assert refusing.refused.wait(10), "the storer never tried to store"
        # Refused, so not acknowledged: in the storer's hand (unacked), none ready, none stored.
        assert dead_store.count(LetterQuery()) == 0
        wait_until(lambda: broker.depth(DEAD_LETTER_QUEUE_NAME) == 0, message="all three in hand")
        assert dead_store.count(LetterQuery()) == 0

        refusing.refusing.clear()  # the database is back: the batch in hand is stored
        wait_until(lambda: dead_store.count(LetterQuery()) == 3, message="the refused letters stored")
        later = park_many(publisher, 2)  # and letters keep being stored as they arrive
        wait_until(lambda: dead_store.count(LetterQuery()) == 5, message="the later letters stored")
    finally:
        running.close()
    assert sorted(row.message_id for row in dead_store.find(LetterQuery())) == sorted(first + later)
    assert broker.depth(DEAD_LETTER_QUEUE_NAME) == 0


def test_letters_a_stopped_storer_could_not_store_go_back_to_the_queue(
    settings, broker, publisher, dead_store
):
    refusing = _RefusingStore(dead_store)
    refusing.refusing.set()
    storer = StoringConsumer.for_url(settings.amqp_url, refusing, retry_every=60)  # type: ignore[arg-type]
    running = InBackground(storer, "test-dead-letter-storer")
    running.start()
    try:
        parked = park_many(publisher, 4)
        assert refusing.refused.wait(10)
    finally:
        running.close()
    wait_until(lambda: broker.depth(DEAD_LETTER_QUEUE_NAME) == 4, message="the letters back in the queue")
    assert dead_store.count(LetterQuery()) == 0
    assert StoringConsumer.for_url(settings.amqp_url, dead_store, until_idle=0.3).drain().stored == 4
    assert sorted(row.message_id for row in dead_store.find(LetterQuery())) == sorted(parked)


def test_storing_what_waits_with_the_broker_away_fails_at_once_without_the_password(dead_store):
    from reliability.errors import OpsError

    url = "amqp://guest:not-to-be-shown@127.0.0.1:1/%2F"  # nothing listens on port 1
    with pytest.raises(OpsError) as raised:
        StoringConsumer.for_url(url, dead_store, until_idle=0.3).drain()
    assert "127.0.0.1" in str(raised.value) and "not-to-be-shown" not in str(raised.value)


def test_storing_what_waits_with_the_database_away_fails_and_leaves_the_letters_queued(
    settings, broker, publisher, dead_store
):
    parked = park_many(publisher, 2)
    wait_until(lambda: broker.depth(DEAD_LETTER_QUEUE_NAME) == 2, message="the dead letters")
    refusing = _RefusingStore(dead_store)
    refusing.refusing.set()
    with pytest.raises(OperationalError):
        StoringConsumer.for_url(settings.amqp_url, refusing, until_idle=0.3).drain()  # type: ignore[arg-type]
    wait_until(lambda: broker.depth(DEAD_LETTER_QUEUE_NAME) == 2, message="the letters back in the queue")
    assert StoringConsumer.for_url(settings.amqp_url, dead_store, until_idle=0.3).drain().stored == 2
    assert sorted(row.message_id for row in dead_store.find(LetterQuery())) == sorted(parked)
