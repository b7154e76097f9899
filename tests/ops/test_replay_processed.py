"""A replayed dead letter is processed by the real sync worker: the record reaches FlexPoint."""

from __future__ import annotations

import json

import pytest
import requests

from broker.topology import DEAD_LETTER_QUEUE_NAME
from tests.conftest import COMPANY, wait_until
from tests.ops.conftest import envelope
from tests.workers.test_sync_flow import stored, worker  # noqa: F401  (the worker fixture)
from workers.deadletters.operations import DeadLetters, replay
from workers.deadletters.selection import Selection
from workers.deadletters.store import LetterQuery
from workers.runtime.failures import Failure, destination

pytestmark = pytest.mark.broker


def test_a_replayed_dead_letter_is_synced_to_flexpoint(
    intacct,
    live_receiver,
    flexpoint,
    broker,
    amqp_url,
    publisher,
    dead_store,
    worker,  # noqa: F811
):
    admin = f"{intacct.base_url}/sandbox"
    requests.post(f"{admin}/companies", json={"companyId": COMPANY}, timeout=10).raise_for_status()
    created = requests.post(
        f"{admin}/companies/{COMPANY}/objects/accounts-receivable/customer",
        json={"id": "C-77", "name": "Seventy Seven Ltd", "status": "active"},
        timeout=10,
    )
    created.raise_for_status()
    key = str(created.json()["key"])
    # The event failed earlier (FlexPoint was down for too long) and was parked.
    body = envelope(live_receiver.connection.connection_id, "customers", key=key, companyId=COMPANY)
    target = destination(
        Failure("flexpoint_unavailable", RuntimeError("503"), transient=True),
        queue="sync.ar",
        routing_key="ar.customers.update",
        headers={"x-flexsync-attempts": 4},
    )
    broker.publish(
        "",
        DEAD_LETTER_QUEUE_NAME,
        json.dumps(body).encode(),
        headers=target.headers,
        message_id=body["eventId"],
    )
    wait_until(lambda: broker.depth(DEAD_LETTER_QUEUE_NAME) == 1, message="the dead letter")
    assert stored(flexpoint, live_receiver, "customers", key) is None

    outcome = replay(DeadLetters(dead_store, amqp_url, publisher), Selection(resource="customers"))
    assert outcome.tally.moved == 1

    record = wait_until(
        lambda: stored(flexpoint, live_receiver, "customers", key),
        timeout=30,
        message="the replayed customer in FlexPoint",
    )
    assert record["data"]["customerId"] == "C-77"
    assert broker.depth(DEAD_LETTER_QUEUE_NAME) == 0
    assert dead_store.count(LetterQuery()) == 0 and dead_store.count(LetterQuery(state="replayed")) == 1
