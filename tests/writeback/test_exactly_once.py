"""Exactly once under the failures that could post a payment twice: two workers holding one
message, Intacct committing a create and losing its answer, a worker SIGKILLed mid-create."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from kombu import Connection

from broker.topology import build_topology, declare_topology
from config.settings import ENVIRONMENT_VARIABLES
from store.db import create_engine_for
from tests.conftest import wait_until
from tests.writeback.conftest import reference_of
from workers.writeback.store import PostingStore

pytestmark = pytest.mark.broker

REPO = Path(__file__).resolve().parents[2]
CREATE = "accounts-receivable/payment:create"
# The retry ladder of these tests: the first two retries come before a create's window ends
# (17 s at the 3 s timeouts used here), the third after it, 32 s in, where the default ladder's
# third (60 s) would make each test wait a minute for the lookup they are about.
LADDER = (2, 10, 20)


@pytest.fixture
def wb_settings(wb_settings):
    with Connection(wb_settings.amqp_url) as connection:
        declare_topology(connection, build_topology(wb_settings.archive_max_age, LADDER))
    return wb_settings.with_overrides(flexsync_retry_delays=LADDER)


def creates(intacct, company_id: str) -> int:
    stats = requests.get(
        f"{intacct.base_url}/sandbox/stats", params={"companyId": company_id}, timeout=10
    ).json()
    return stats["calls"].get(company_id, {}).get(CREATE, 0)


def intacct_faults(intacct, **settings) -> None:
    requests.patch(f"{intacct.base_url}/sandbox/faults", json=settings, timeout=10).raise_for_status()


def test_the_same_message_in_two_workers_at_once_creates_one_payment(make_account, start_writeback, intacct):
    account = make_account()
    invoices = [account.books.invoice("20.00") for _ in range(5)]
    intacct_faults(intacct, latencyMs=150)
    start_writeback(workers=2)
    start_writeback(workers=2)
    payments = [account.payment({key: "20.00"}) for key in invoices]
    for payment in payments:
        for copy in range(3):
            account.publish("payment.post", {**payment, "messageId": f"{payment['messageId']}-{copy}"})
    for payment in payments:
        account.wait_for(payment, "posted", timeout=60)
    for payment in payments:
        assert len(account.books.payments(reference_of(payment))) == 1
    assert creates(intacct, account.books.company_id) == len(payments)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("fault", ["commitErrorRate", "commitTimeoutRate"])
def test_a_create_committed_then_failed_is_found_by_its_reference_not_created_again(
    make_account, start_writeback, intacct, fault
):
    account = make_account()
    invoice = account.books.invoice("75.00")
    intacct_faults(intacct, timeoutHoldSeconds=5)  # past the worker's 3 s request timeout
    account.books.configure(writeFaults={fault: 1.0})
    start_writeback()
    payment = account.payment({invoice: "75.00"})
    account.publish("payment.post", payment)
    # An unknown outcome is looked up only once the write's window (17 s at these timings) has
    # ended, never at once: the retries after 2 s and 10 s find it unsettled, the one 20 s later
    # finds the payment by its reference.
    report = account.wait_for(payment, "posted", timeout=150)

    (stored,) = account.books.payments(reference_of(payment))
    assert report["intacctKey"] == str(stored["key"])
    assert creates(intacct, account.books.company_id) == 1


def test_a_worker_killed_between_intent_and_answer_leaves_one_payment(
    make_account, wb_settings, intacct, broker, tmp_path
):
    account = make_account()
    invoice = account.books.invoice("55.00")
    intacct_faults(intacct, latencyMs=1500)
    env = {
        **{k: v for k, v in os.environ.items() if k not in ENVIRONMENT_VARIABLES},
        "AMQP_URL": wb_settings.amqp_url,
        "DATABASE_URL": wb_settings.database_url,
        "FLEXSYNC_ENV": "test",
        "FLEXSYNC_SECRET_KEY": ",".join(wb_settings.flexsync_secret_key),
        "INTACCT_API_URL": wb_settings.intacct_api_url,
        "INTACCT_CLIENT_SECRET": wb_settings.intacct_client_secret,
        "FLEXPOINT_API_URL": wb_settings.flexpoint_api_url,
        "FLEXPOINT_API_TOKEN": wb_settings.flexpoint_api_token,
        "LOG_FORMAT": "json",
        "FLEXSYNC_RETRY_DELAYS": ",".join(map(str, LADDER)),
    }
    command = [
        sys.executable,
        "-m",
        "cli.main",
        "writeback",
        "--metrics-port",
        "0",
        "--request-timeout",
        "3",
        "--slot-timeout",
        "2",
    ]

    def start(name: str) -> subprocess.Popen:
        log = (tmp_path / f"{name}.log").open("wb")
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)

    engine = create_engine_for(wb_settings.database_url)
    postings = PostingStore(engine)
    first = start("first")
    try:
        payment = account.payment({invoice: "55.00"})
        account.publish("payment.post", payment)
        wait_until(
            lambda: (
                (p := postings.get(account.account_id, payment["paymentId"])) is not None
                and p.state == "creating"
            ),
            timeout=60,
            interval=0.02,
            message="the create's intent recorded",
        )
        # The create has reached Intacct (counted on arrival), which holds it 1.5 s before answering.
        wait_until(
            lambda: creates(intacct, account.books.company_id) == 1,
            timeout=10,
            interval=0.02,
            message="the create to reach Intacct",
        )
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        intacct_faults(intacct, latencyMs=0)
        second = start("second")
        try:
            report = account.wait_for(payment, "posted", timeout=90)
        finally:
            second.terminate()
            second.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
        engine.dispose()
    (stored,) = account.books.payments(reference_of(payment))
    assert report["intacctKey"] == str(stored["key"])
    assert creates(intacct, account.books.company_id) == 1
