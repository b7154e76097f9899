"""Malformed connection messages are dead-lettered with their reason and never block the queue."""

from __future__ import annotations

import json

import pytest

from tests.conftest import wait_until
from tests.provisioning.conftest import BackfillNeverRequested
from workers.runtime.failures import ATTEMPTS, EXCEPTION, ORIGINAL_QUEUE, ORIGINAL_ROUTING_KEY, REASON

pytestmark = pytest.mark.broker


def dead_letters(broker, count: int) -> list[dict]:
    wait_until(lambda: broker.depth("dead-letter") == count, timeout=20, message=f"{count} dead letters")
    return [m.properties["application_headers"] for m in broker.take_all("dead-letter")]


def test_malformed_messages_are_dead_lettered_with_their_reason_and_the_queue_moves_on(
    sandbox, start_worker, messages, broker
):
    start_worker(backfills=BackfillNeverRequested(), workers=1)
    messages.publish("connection.connect", b"{not json")
    missing_user = messages.connect("ANY-CO", publish=False, userPassword="never-in-a-header-1")
    del missing_user["userId"]
    messages.publish("connection.connect", missing_user)
    messages.publish("connection.disconnect", {**missing_user, "requestedAt": "yesterday"})
    messages.publish("provisioning", messages.connect("ANY-CO", publish=False), exchange="")
    messages.publish("connection.connect", b"[1, 2, 3]")
    # Behind the poison, a good message is handled as usual.
    good = messages.connect(sandbox.company(), userId="nobody")

    sandbox.wait_for_state(good["accountId"], "failed")
    headers = dead_letters(broker, 5)
    by_reason = {}
    for header in headers:
        assert header[ATTEMPTS] == 1 and header[ORIGINAL_QUEUE] == "provisioning"
        assert "never-in-a-header-1" not in json.dumps(header)
        by_reason.setdefault(header[REASON], []).append(header)
    assert sorted(by_reason) == ["malformed_message", "unknown_routing_key"]
    assert len(by_reason["malformed_message"]) == 4
    texts = " ".join(h[EXCEPTION] for h in by_reason["malformed_message"])
    assert "userId" in texts and "requestedAt" in texts and "reason" in texts
    (wrong_key,) = by_reason["unknown_routing_key"]
    assert (
        wrong_key[ORIGINAL_ROUTING_KEY] == "provisioning"
        and "not a connection message" in wrong_key[EXCEPTION]
    )
    assert broker.depth("provisioning") == 0


def test_a_message_for_a_connection_of_another_account_is_dead_lettered(
    sandbox, start_worker, messages, broker, backfills
):
    worker = start_worker(backfills=backfills)
    sent = messages.connect(sandbox.company())
    sandbox.wait_for_state(sent["accountId"], "connected")
    # Stamped later than the owner's disconnect below, as a stray message could be.
    stray = messages.disconnect(sent, publish=False, accountId="acct-someone-else")
    owners = messages.disconnect(sent, publish=False)
    stray["requestedAt"], owners["requestedAt"] = owners["requestedAt"], stray["requestedAt"]
    messages.publish("connection.disconnect", stray)
    (header,) = dead_letters(broker, 1)
    assert header[REASON] == "account_mismatch"
    assert worker.store.get(sent["connectionId"]).state == "connected"
    # The rejected message took no place in the order of requests: the owner's still counts.
    messages.publish("connection.disconnect", owners)
    sandbox.wait_for_state(sent["accountId"], "disconnected")
    assert worker.store.get(sent["connectionId"]).state == "disconnected"


def test_a_parked_connect_keeps_no_password(sandbox, start_worker, messages, broker, backfills):
    worker = start_worker(backfills=backfills)
    sent = messages.connect(sandbox.company())
    sandbox.wait_for_state(sent["accountId"], "connected")
    messages.connect(
        "ANY-CO",
        connectionId=sent["connectionId"],
        accountId="acct-someone-else",
        userPassword="parked-password-77",
    )
    wait_until(lambda: broker.depth("dead-letter") == 1, timeout=20, message="the parked connect")
    (letter,) = broker.take_all("dead-letter")
    assert letter.properties["application_headers"][REASON] == "account_mismatch"
    assert b"parked-password-77" not in letter.body
    assert "userPassword" not in json.loads(letter.body)
    assert worker.store.get(sent["connectionId"]).state == "connected"
