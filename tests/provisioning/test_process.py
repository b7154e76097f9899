"""The ``provisioning`` command: start-up checks, and a clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

from broker.topology import DEAD_LETTER_QUEUE_NAME
from cli.processes import provisioning
from config.settings import SettingsError
from store.db import create_engine_for, upgrade
from tests.conftest import wait_until
from workers.deadletters.store import DeadLetterStore, LetterQuery

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_a_missing_setting_stops_start_up_naming_it(tmp_path):
    env = {"FLEXSYNC_ENV": "development", "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite"}
    result = CliRunner().invoke(provisioning, [], env=env, obj={})
    assert isinstance(result.exception, SettingsError)
    assert "INTACCT_CLIENT_SECRET is required by the provisioning process" in str(result.exception)


@pytest.mark.broker
def test_sigterm_finishes_the_connect_in_hand_then_exits(
    tmp_path, amqp_url, intacct, flexpoint, broker, messages, sandbox
):
    """QUALITY R5: the message being handled when SIGTERM arrives is finished and acked."""
    env = {
        **os.environ,
        "FLEXSYNC_ENV": "development",
        "AMQP_URL": amqp_url,
        "DATABASE_URL": f"sqlite:///{tmp_path}/flexsync.db",
        "INTACCT_API_URL": intacct.api_url,
        "INTACCT_CLIENT_SECRET": intacct.config.client_secret,
        "FLEXPOINT_API_URL": flexpoint.url,
        "FLEXPOINT_API_TOKEN": flexpoint.config.token,
        "PUBLIC_BASE_URL": "https://flexsync.example.com",
        "LOG_FORMAT": "json",
    }
    code = "from cli.processes import provisioning; provisioning(obj={})"
    process = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        # Slow Intacct so the connect (a token, then one read per area) is surely mid-way.
        sandbox.intacct_faults(latencyMs=700)
        sent = messages.connect(sandbox.company())
        sandbox.wait_for_state(sent["accountId"], "connecting", timeout=60)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
        sandbox.intacct_faults()
    output = process.stderr.read()
    assert "provisioning_stopping" in output and "provisioning_stopped" in output
    # Finished before the exit, not left for the next process: FlexPoint heard the outcome and
    # the message was acked (an unacked one would be back in the queue now).
    assert sandbox.status(sent["accountId"])["state"] == "connected"
    wait_until(lambda: broker.depth("provisioning") == 0, message="nothing left in the queue")


@pytest.mark.broker
def test_the_provisioning_process_stores_dead_letters_and_stops_cleanly(
    tmp_path, amqp_url, intacct, flexpoint, broker
):
    """The dead-letter storer is a part of the provisioning process (not of the console)."""
    database_url = f"sqlite:///{tmp_path}/flexsync.db"
    env = {
        **os.environ,
        "FLEXSYNC_ENV": "development",
        "AMQP_URL": amqp_url,
        "DATABASE_URL": database_url,
        "INTACCT_API_URL": intacct.api_url,
        "INTACCT_CLIENT_SECRET": intacct.config.client_secret,
        "FLEXPOINT_API_URL": flexpoint.url,
        "FLEXPOINT_API_TOKEN": flexpoint.config.token,
        "PUBLIC_BASE_URL": "https://flexsync.example.com",
        "LOG_FORMAT": "json",
    }
    code = "from cli.processes import provisioning; provisioning(obj={})"
    process = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    engine = create_engine_for(database_url)
    try:
        upgrade(engine)
        store = DeadLetterStore(engine)
        broker.publish("", DEAD_LETTER_QUEUE_NAME, b'{"eventId": "parked-1"}', message_id="parked-1")
        wait_until(lambda: store.count(LetterQuery()) == 1, timeout=30, message="the letter stored")
        assert [row.message_id for row in store.find(LetterQuery())] == ["parked-1"]
        wait_until(lambda: broker.depth(DEAD_LETTER_QUEUE_NAME) == 0, message="the letter acked")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
        engine.dispose()
    output = process.stderr.read()
    assert "provisioning_stopped" in output and "dead_letter_storer_draining" in output
