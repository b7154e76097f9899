"""Disconnect: syncing stops, secrets go, the receiver answers 410; stale messages change nothing."""

from __future__ import annotations

import pytest
import requests
from sqlalchemy import text

from tests.conftest import wait_until

pytestmark = pytest.mark.broker


def test_a_disconnect_purges_the_secrets_reports_disconnected_and_the_receiver_answers_410(
    sandbox, start_worker, messages, backfills, live_receiver
):
    worker = start_worker(backfills=backfills)
    sent = messages.connect(sandbox.company(), userPassword="to-be-purged-123")
    sandbox.wait_for_state(sent["accountId"], "connected")
    url = f"{live_receiver.base_url}/webhooks/intacct/{sent['connectionId']}"
    event = {"object": "ARINVOICE", "action": "set", "key": "1"}
    # Live: the receiver knows the connection (an unsigned post is refused as unauthenticated).
    assert requests.post(url, json=event, timeout=10).status_code == 401

    messages.disconnect(sent)
    status = sandbox.wait_for_state(sent["accountId"], "disconnected")
    assert status["reason"] == "disconnected_by_user" and status["connectionId"] == sent["connectionId"]
    record = worker.store.get(sent["connectionId"])
    assert record.state == "disconnected" and record.webhook_secrets == ()
    assert worker.store.user_password(sent["connectionId"]) is None
    with worker.parts.engine.connect() as conn:
        row = conn.execute(
            text("SELECT user_password_enc, webhook_secret_enc FROM connections WHERE connection_id = :c"),
            {"c": sent["connectionId"]},
        ).one()
    assert tuple(row) == (None, None)
    wait_until(
        lambda: requests.post(url, json=event, timeout=10).status_code == 410,
        timeout=15,
        message="the receiver to answer 410",
    )


def test_a_stale_connect_replayed_after_a_disconnect_changes_nothing(
    sandbox, start_worker, messages, backfills, broker
):
    worker = start_worker(backfills=backfills, workers=1)
    connect = messages.connect(sandbox.company())
    sandbox.wait_for_state(connect["accountId"], "connected")
    messages.disconnect(connect)
    sandbox.wait_for_state(connect["accountId"], "disconnected")
    reports = len(sandbox.status_puts(connect["accountId"]))

    messages.publish("connection.connect", connect)
    # One message at a time: once the marker after it is handled, the replay was handled too.
    marker = messages.connect("NO-SUCH-COMPANY")
    sandbox.wait_for_state(marker["accountId"], "failed")

    assert sandbox.status(connect["accountId"])["state"] == "disconnected"
    assert len(sandbox.status_puts(connect["accountId"])) == reports
    assert worker.store.get(connect["connectionId"]).state == "disconnected"
    assert broker.depth("dead-letter") == 0


def test_a_disconnect_overtaken_by_a_newer_connect_does_not_undo_it(
    sandbox, start_worker, messages, backfills
):
    worker = start_worker(backfills=backfills, workers=1)
    company = sandbox.company()
    connect = messages.connect(company, publish=False)
    old_disconnect = messages.disconnect(connect, publish=False)
    reconnect = messages.connect(
        company, publish=False, accountId=connect["accountId"], connectionId=connect["connectionId"]
    )
    # Delivered out of order: the reconnect first, the older disconnect after it.
    messages.publish("connection.connect", reconnect)
    messages.publish("connection.disconnect", old_disconnect)
    marker = messages.connect("NO-SUCH-COMPANY")
    sandbox.wait_for_state(marker["accountId"], "failed")
    assert sandbox.status(connect["accountId"])["state"] == "connected"
    assert worker.store.get(connect["connectionId"]).state == "connected"


def test_a_disconnect_of_an_unknown_connection_is_reported_and_acknowledged(
    sandbox, start_worker, messages, backfills, broker
):
    start_worker(backfills=backfills)
    connect = messages.connect("NEVER-CONNECTED", publish=False)
    messages.disconnect(connect)
    status = sandbox.wait_for_state(connect["accountId"], "disconnected")
    assert status["reason"] == "disconnected_by_user"
    assert broker.depth("dead-letter") == 0
