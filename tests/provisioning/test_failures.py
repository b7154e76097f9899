"""Every way a connect fails, each as FlexPoint receives it: reason, missing areas, the step to fix."""

from __future__ import annotations

import json

import pytest

from tests.conftest import wait_until
from tests.provisioning.conftest import BackfillNeverRequested

pytestmark = pytest.mark.broker


@pytest.fixture
def worker(start_worker):
    return start_worker(backfills=BackfillNeverRequested())


def failed_status(sandbox, sent) -> dict:
    status = sandbox.wait_for_state(sent["accountId"], "failed")
    assert status["connectionId"] == sent["connectionId"] and status["webhookUrl"] is None
    return status


def test_an_unknown_user_is_invalid_credentials_pointing_at_the_web_services_user_step(
    sandbox, worker, messages, broker
):
    sent = messages.connect(sandbox.company(), userId="nobody")
    status = failed_status(sandbox, sent)
    assert status["reason"] == "invalid_credentials" and status["missingPermissions"] == []
    assert "step 2" in status["message"] and "nobody" in status["message"]
    assert worker.store.get(sent["connectionId"]) is None
    assert broker.depth("dead-letter") == 0


def test_a_user_that_is_not_a_web_services_user_is_invalid_credentials(sandbox, worker, messages):
    company = sandbox.company(users=[{"userId": "ws_flexpoint", "webServices": False}])
    status = failed_status(sandbox, messages.connect(company))
    assert status["reason"] == "invalid_credentials"


def test_an_unauthorized_sender_points_at_the_sender_id_step(sandbox, worker, messages):
    sent = messages.connect(sandbox.company(sender_authorized=False))
    status = failed_status(sandbox, sent)
    assert status["reason"] == "sender_not_authorized"
    assert "step 3" in status["message"] and "LendARR" in status["message"]
    assert "4d02d25de337869dfecd.app.sage.com" in status["message"]


def test_every_missing_area_is_listed(sandbox, worker, messages):
    company = sandbox.company(users=[{"userId": "ws_flexpoint", "areas": ["accounts-receivable"]}])
    status = failed_status(sandbox, messages.connect(company))
    assert status["reason"] == "missing_permission"
    assert status["missingPermissions"] == ["company", "general-ledger", "cash-management"]
    assert "step 1" in status["message"]
    for title in ("Company", "General Ledger", "Cash Management"):
        assert title in status["message"]
    assert "Accounts Receivable" not in status["message"]


def test_an_unknown_company_points_at_the_connect_step(sandbox, worker, messages):
    status = failed_status(sandbox, messages.connect("NO-SUCH-COMPANY"))
    assert status["reason"] == "company_not_found"
    assert "step 4" in status["message"] and "NO-SUCH-COMPANY" in status["message"]


def test_an_unknown_entity_is_company_not_found_and_names_the_entity(sandbox, worker, messages):
    status = failed_status(sandbox, messages.connect(sandbox.company(), entityId="WEST"))
    assert status["reason"] == "company_not_found" and "WEST" in status["message"]


def test_our_own_wrong_client_secret_is_an_internal_error_not_the_customers(
    sandbox, start_worker, worker_settings, messages
):
    start_worker(
        worker_settings.with_overrides(intacct_client_secret="not-our-secret"),
        backfills=BackfillNeverRequested(),
    )
    status = failed_status(sandbox, messages.connect(sandbox.company()))
    assert status["reason"] == "internal_error" and "FlexPoint's side" in status["message"]


def test_intacct_unavailable_is_retried_through_the_delay_queue_before_it_is_reported(
    sandbox, worker, messages, broker
):
    sandbox.intacct_faults(errorRate=1.0, errorStatus=503)
    sent = messages.connect(sandbox.company())
    wait_until(
        lambda: broker.depth("provisioning.delay.2s") == 1,
        timeout=30,
        message="the connect in the delay queue",
    )
    assert sandbox.status(sent["accountId"])["state"] == "connecting"
    status = failed_status(sandbox, sent)
    assert status["reason"] == "intacct_unavailable" and "Connect again" in status["message"]
    # connecting (first try), connecting (the retry), failed.
    assert len(sandbox.status_puts(sent["accountId"])) == 3
    assert broker.depth("dead-letter") == 0 and broker.depth("provisioning") == 0


def test_a_failed_recheck_of_a_live_connection_marks_it_failed(sandbox, start_worker, messages, backfills):
    company = sandbox.company(users=["ws_flexpoint"])
    worker = start_worker(backfills=backfills)
    first = messages.connect(company)
    sandbox.wait_for_state(first["accountId"], "connected")
    messages.connect(company, userId="gone", accountId=first["accountId"], connectionId=first["connectionId"])
    status = sandbox.wait_for_state(first["accountId"], "failed")
    assert status["reason"] == "invalid_credentials"
    record = worker.store.get(first["connectionId"])
    assert record.state == "failed" and record.user_id == "ws_flexpoint"


def test_flexpoint_unreachable_while_reporting_is_retried_not_lost(sandbox, worker, messages, broker):
    sandbox.flexpoint_faults(serverErrorRate=1.0)
    sent = messages.connect(sandbox.company(), userId="nobody")
    wait_until(
        lambda: broker.depth("provisioning.delay.2s") == 1,
        timeout=30,
        message="the report in the delay queue",
    )
    sandbox.flexpoint_faults(serverErrorRate=0.0)
    status = failed_status(sandbox, sent)
    assert status["reason"] == "invalid_credentials"
    assert broker.depth("dead-letter") == 0


def test_a_connect_waiting_in_the_delay_queues_holds_its_password_sealed(
    sandbox, start_worker, messages, broker, backfills
):
    worker = start_worker(backfills=backfills, unavailable_retries=2)
    sandbox.intacct_faults(errorRate=1.0, errorStatus=503)
    sent = messages.connect(sandbox.company(), userPassword="retry-pass-8841")
    # The second trip: sealed once on the way to the 2 s queue, sent on as it was to the 10 s one.
    wait_until(lambda: broker.depth("provisioning.delay.10s") == 1, timeout=30, message="the second trip")
    sandbox.intacct_faults()  # Intacct is back
    parked = broker.get("provisioning.delay.10s")
    assert b"retry-pass-8841" not in parked.body
    document = json.loads(parked.body)
    assert "userPassword" not in document and document["userPasswordSealed"]

    # Back in the work queue (as the delay queue would send it), the connect completes with the
    # password FlexPoint sent, stored encrypted.
    broker.publish("", "provisioning", parked.body, headers=parked.properties["application_headers"])
    sandbox.wait_for_state(sent["accountId"], "connected")
    assert worker.store.user_password(sent["connectionId"]) == "retry-pass-8841"
    assert broker.depth("dead-letter") == 0
