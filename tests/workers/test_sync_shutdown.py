"""QUALITY R5 for the sync worker: SIGTERM finishes in-flight work, nothing acked undone, nothing lost."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime

import pytest
import requests

from store.crypto import SecretBox
from store.db import create_engine_for, upgrade
from tests.conftest import COMPANY, wait_until
from workers.connections.store import ConnectionStore

pytestmark = pytest.mark.broker

ACCOUNT = "acct-shutdown"


@pytest.fixture
def setup(settings, intacct, flexpoint, broker):
    engine = create_engine_for(settings.database_url)
    upgrade(engine)
    connection = ConnectionStore(engine, SecretBox(settings.flexsync_secret_key)).save(
        connection_id="conn-shutdown",
        account_id=ACCOUNT,
        company_id=COMPANY,
        entity_id=None,
        user_id="ws_flexpoint",
        state="connected",
    )
    engine.dispose()
    admin = f"{intacct.base_url}/sandbox"
    requests.post(f"{admin}/companies", json={"companyId": COMPANY}, timeout=10).raise_for_status()
    requests.post(
        f"{admin}/companies/{COMPANY}/seed", json={"customers": 40, "invoices": 0}, timeout=60
    ).raise_for_status()
    env = {
        **os.environ,
        "FLEXSYNC_ENV": "test",
        "AMQP_URL": settings.amqp_url,
        "DATABASE_URL": settings.database_url,
        "FLEXSYNC_SECRET_KEY": ",".join(settings.flexsync_secret_key),
        "LOG_FORMAT": "console",
        "INTACCT_API_URL": intacct.api_url,
        "INTACCT_CLIENT_SECRET": intacct.config.client_secret,
        "FLEXPOINT_API_URL": flexpoint.url,
        "FLEXPOINT_API_TOKEN": flexpoint.config.token,
    }
    return connection, env


def _start_worker(env: dict) -> subprocess.Popen:
    with socket.socket() as probe:  # the worker serves /metrics on $PORT
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "sync"],
        env={**env, "PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _still_running(worker: subprocess.Popen, predicate):
    def check():
        if worker.poll() is not None:
            pytest.fail(f"the worker exited with {worker.returncode}:\n{worker.stdout.read()}")
        return predicate()

    return check


def _publish_customers(broker, connection, keys) -> None:
    for key in keys:
        envelope = {
            "connectionId": connection.connection_id,
            "resource": "customers",
            "key": str(key),
            "action": "update",
            "eventId": f"e-{key}",
            "receivedAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        broker.publish("intacct.events", "ar.customers.update", json.dumps(envelope).encode())


def _customers_in_flexpoint(flexpoint) -> set[str]:
    response = requests.get(
        f"{flexpoint.url}/v1/accounts/{ACCOUNT}/accounting/customers",
        params={"limit": 1000},
        headers={"Authorization": f"Bearer {flexpoint.config.token}"},
        timeout=10,
    )
    return {item["externalId"] for item in response.json()["items"]} if response.status_code == 200 else set()


def _fetched_from_intacct(intacct) -> bool:
    stats = requests.get(
        f"{intacct.base_url}/sandbox/stats", params={"companyId": COMPANY}, timeout=10
    ).json()
    return any("customer" in path for path in stats["calls"].get(COMPANY, {}))


def test_sigterm_finishes_in_flight_groups_and_leaves_the_rest_in_the_queue(
    setup, intacct, flexpoint, broker
):
    connection, env = setup
    faults = f"{flexpoint.url}/sandbox/faults"
    token = {"Authorization": f"Bearer {flexpoint.config.token}"}
    # Each FlexPoint write takes 1.5 s: a group is surely in flight when SIGTERM comes.
    requests.put(faults, json={"latencyMs": 1500}, headers=token, timeout=10).raise_for_status()
    requests.delete(
        f"{intacct.base_url}/sandbox/stats", timeout=10
    ).raise_for_status()  # count the worker's only
    _publish_customers(broker, connection, range(1, 41))
    worker = _start_worker(env)
    try:
        wait_until(
            _still_running(worker, lambda: _fetched_from_intacct(intacct)),
            timeout=30,
            message="a group fetched from Intacct, its 1.5 s FlexPoint write now under way",
        )
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, output
    assert "sync_stopped" in output
    finished = _customers_in_flexpoint(flexpoint)
    assert finished, f"the group in flight at SIGTERM was abandoned instead of finished:\n{output}"
    # What was not finished went back to the queue: nothing acknowledged that was not done.
    assert len(finished) + broker.depth("sync.ar") >= 40

    requests.put(faults, json={"latencyMs": 0}, headers=token, timeout=10).raise_for_status()
    again = _start_worker(env)
    try:
        wait_until(
            _still_running(again, lambda: len(_customers_in_flexpoint(flexpoint)) == 40),
            timeout=60,
            message="every customer synced",
        )
    finally:
        again.send_signal(signal.SIGTERM)
        again.wait(60)
    assert broker.depth("dead-letter") == 0
