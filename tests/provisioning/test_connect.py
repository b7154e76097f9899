"""Connect through the sandbox: checks, the stored connection, the statuses FlexPoint received."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import text

from broker.topology import RETRY_DELAYS_SECONDS, delay_queue_name
from tests.conftest import wait_until
from tests.provisioning.conftest import PUBLIC_BASE_URL
from workers.backfill.store import BackfillStore, Checkpoint
from workers.connections.marks import ProvisioningMarks

pytestmark = pytest.mark.broker


def test_a_connect_reports_connecting_then_connected_with_the_webhook_url_and_stores_the_connection(
    sandbox, start_worker, messages, backfills
):
    company = sandbox.company()
    # Slow reads keep "connecting" visible long enough to be seen between the two reports.
    sandbox.intacct_faults(latencyMs=300)
    worker = start_worker(backfills=backfills)
    sent = messages.connect(company, userPassword="xml-fallback-password-1")
    account = sent["accountId"]

    seen = sandbox.wait_for_state(account, "connecting", timeout=15)
    assert seen["connectionId"] == sent["connectionId"] and seen["companyId"] == company
    done = sandbox.wait_for_state(account, "connected")
    assert done["webhookUrl"] == f"{PUBLIC_BASE_URL}/webhooks/intacct/{sent['connectionId']}"
    assert done["reason"] is None and done["missingPermissions"] == []
    assert [p["status"] for p in sandbox.status_puts(account)] == [200, 200]

    stored = worker.store.get(sent["connectionId"])
    assert (stored.account_id, stored.company_id, stored.user_id, stored.state) == (
        account,
        company,
        "ws_flexpoint",
        "connected",
    )
    assert worker.store.user_password(sent["connectionId"]) == "xml-fallback-password-1"
    secret = worker.store.webhook_secret(sent["connectionId"])
    with worker.parts.engine.connect() as conn:
        row = conn.execute(
            text("SELECT user_password_enc, webhook_secret_enc FROM connections WHERE connection_id = :c"),
            {"c": sent["connectionId"]},
        ).one()
        runs = conn.execute(
            text("SELECT count(*) FROM backfill_runs WHERE connection_id = :c"), {"c": sent["connectionId"]}
        ).scalar()
    # Encrypted at rest: the columns hold Fernet tokens, never the values.
    assert "xml-fallback-password-1" not in row.user_password_enc and row.user_password_enc.startswith(
        "gAAAA"
    )
    assert secret not in row.webhook_secret_enc and row.webhook_secret_enc.startswith("gAAAA")
    assert runs == 1, "the historical import is scheduled after a successful connect"


def test_a_connect_to_one_entity_checks_it_and_keeps_it(sandbox, start_worker, messages, backfills):
    company = sandbox.company(entities=["EAST"])
    worker = start_worker(backfills=backfills)
    sent = messages.connect(company, entityId="EAST")
    done = sandbox.wait_for_state(sent["accountId"], "connected")
    assert done["entityId"] == "EAST"
    assert worker.store.get(sent["connectionId"]).entity_id == "EAST"


def test_a_second_connect_revalidates_and_rotates_the_credentials(sandbox, start_worker, messages, backfills):
    company = sandbox.company(
        users=[
            {
                "userId": "ws_old",
                "areas": ["company", "general-ledger", "accounts-receivable", "cash-management"],
            },
            {
                "userId": "ws_new",
                "areas": ["company", "general-ledger", "accounts-receivable", "cash-management"],
            },
        ]
    )
    worker = start_worker(backfills=backfills)
    first = messages.connect(company, userId="ws_old", userPassword="old-password-123")
    sandbox.wait_for_state(first["accountId"], "connected")
    secret = worker.store.webhook_secret(first["connectionId"])

    second = messages.connect(
        company,
        userId="ws_new",
        userPassword="new-password-456",
        accountId=first["accountId"],
        connectionId=first["connectionId"],
    )
    wait_until(
        lambda: worker.store.get(first["connectionId"]).user_id == "ws_new",
        timeout=30,
        message="the rotated user stored",
    )
    sandbox.wait_for_state(second["accountId"], "connected")
    assert worker.store.user_password(first["connectionId"]) == "new-password-456"
    # The webhook URL and secret stay, so the customer's triggers keep working.
    assert worker.store.webhook_secret(first["connectionId"]) == secret
    assert len(sandbox.status_puts(first["accountId"])) == 4


def test_a_replayed_connect_is_harmless(sandbox, start_worker, messages, backfills, broker):
    company = sandbox.company()
    worker = start_worker(backfills=backfills, workers=1)
    sent = messages.connect(company, userPassword="replayed-password-1")
    sandbox.wait_for_state(sent["accountId"], "connected")
    before = worker.store.get(sent["connectionId"])
    secret = worker.store.webhook_secret(sent["connectionId"])
    # The import it scheduled has completed meanwhile.
    runs = BackfillStore(worker.parts.engine)
    runs.claim(sent["connectionId"], "test-holder", 30.0)
    runs.save(sent["connectionId"], "test-holder", Checkpoint("customers", after_key="9", imported=9), 30.0)
    runs.release(sent["connectionId"], "test-holder", "completed")

    messages.publish("connection.connect", sent)
    wait_until(lambda: len(sandbox.status_puts(sent["accountId"])) == 4, message="the replay re-reported")
    assert sandbox.status(sent["accountId"])["state"] == "connected"
    after = worker.store.get(sent["connectionId"])
    assert (after.state, after.user_id, after.created_at) == (before.state, before.user_id, before.created_at)
    assert worker.store.webhook_secret(sent["connectionId"]) == secret
    assert broker.depth("dead-letter") == 0
    # A replay must not re-read the company's whole history.
    assert runs.get(sent["connectionId"]).state == "completed"
    assert runs.checkpoints(sent["connectionId"])["customers"].imported == 9


def test_a_connect_waits_for_the_disconnect_under_way_of_the_accounts_old_connection(
    sandbox, start_worker, messages, backfills, broker
):
    company = sandbox.company()
    worker = start_worker(backfills=backfills)
    first = messages.connect(company)
    sandbox.wait_for_state(first["accountId"], "connected")
    # The customer clicks Disconnect then Connect; the disconnect is taken on (its mark claimed,
    # as another thread or process does first) but has not freed the account yet.
    leaving = messages.disconnect(first, publish=False)
    marks = ProvisioningMarks(worker.parts.engine)
    assert marks.claim(
        first["connectionId"],
        datetime.fromisoformat(leaving["requestedAt"]),
        "disconnect",
        leaving["messageId"],
    )
    second = messages.connect(company, accountId=first["accountId"])
    wait_until(
        lambda: broker.depth(delay_queue_name("provisioning", RETRY_DELAYS_SECONDS[0])) == 1,
        timeout=20,
        message="the connect parked in the first delay queue",
    )
    assert worker.store.get(second["connectionId"]) is None

    messages.publish("connection.disconnect", leaving)  # the disconnect completes
    connected = wait_until(
        lambda: (
            (s := sandbox.status(first["accountId"]))["connectionId"] == second["connectionId"]
            and s["state"] == "connected"
            and s
        ),
        timeout=30,
        message="the new connection connected once the old one was gone",
    )
    assert connected["companyId"] == company
    assert worker.store.get(first["connectionId"]).state == "disconnected"
    assert broker.depth("dead-letter") == 0


def test_a_connect_for_an_account_with_another_live_connection_fails_clearly(
    sandbox, start_worker, messages, backfills
):
    company = sandbox.company()
    worker = start_worker(backfills=backfills)
    first = messages.connect(company)
    sandbox.wait_for_state(first["accountId"], "connected")

    other = messages.connect(company, accountId=first["accountId"])
    failed = sandbox.wait_for_state(first["accountId"], "failed")
    assert failed["connectionId"] == other["connectionId"] and failed["reason"] == "internal_error"
    assert first["connectionId"] in failed["message"] and "Disconnect" in failed["message"]
    assert worker.store.get(other["connectionId"]) is None
    assert worker.store.get(first["connectionId"]).state == "connected"
