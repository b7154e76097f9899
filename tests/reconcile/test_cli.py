"""``flexsync reconcile``: one sweep with --once, and the Procfile process stopping on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from cli.processes import reconcile
from observability.metrics import company_tagger
from schemas.catalog import BY_RESOURCE
from tests.conftest import COMPANY, free_port, wait_until

pytestmark = pytest.mark.broker

CUSTOMERS = BY_RESOURCE["customers"].rest_path
ROOT = Path(__file__).resolve().parents[2]

METRICS_TOKEN = "metrics-token-0123456789abcdef"


def invoke(settings, *args: str):
    return CliRunner().invoke(reconcile, list(args), obj={"settings": settings})


def test_once_sweeps_one_connection_and_prints_a_summary(company, sandbox_settings, live_receiver, broker):
    connection_id = live_receiver.connection.connection_id
    company.webhooks(enabled=False)
    company.create(CUSTOMERS, {"id": "C-1", "name": "One", "status": "active"})

    result = invoke(sandbox_settings, "--once", "--connection", connection_id, "--resource", "customers")
    assert result.exit_code == 0, result.output
    assert (
        f"{connection_id} customers: modified-since, checked 1, published 1 updates + 0 deletes"
        in result.output
    )
    assert "reconciled 1 connection(s), 1 resource sweep(s): published 1, failed 0" in result.output
    wait_until(lambda: broker.depth("sync.ar") == 1, message="the event in sync.ar")

    forced = invoke(sandbox_settings, "--once", "--keyset", "--resource", "customers")
    assert forced.exit_code == 0, forced.output
    # FlexPoint still lacks the customer (no sync worker runs here), so the key-set pass says so again.
    assert "customers: key-set, checked 1, published 1 updates + 0 deletes" in forced.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--once", "--connection", "no-such-connection"], "no connection 'no-such-connection'"),
        (["--once", "--resource", "bogus"], "unknown resource(s) bogus"),
        (["--connection", "x"], "--connection and --resource only go with --once"),
    ],
)
def test_bad_options_are_refused_with_a_clear_message(sandbox_settings, args, message):
    result = invoke(sandbox_settings, *args)
    assert result.exit_code != 0
    assert message in result.output


def test_a_failed_part_makes_once_exit_non_zero(company, sandbox_settings, live_receiver, flexpoint, broker):
    faults = f"{flexpoint.url}/sandbox/faults"
    token = {"Authorization": f"Bearer {flexpoint.config.token}"}
    company.webhooks(enabled=False)
    company.create(CUSTOMERS, {"id": "C-1", "name": "One", "status": "active"})
    requests.put(
        faults, json={"serverErrorRate": 1.0, "seed": 1}, headers=token, timeout=10
    ).raise_for_status()
    result = invoke(sandbox_settings, "--once", "--resource", "customers")
    assert result.exit_code == 1
    assert "customers: failed" in result.output and "failed 1" in result.output


def test_the_process_sweeps_every_interval_and_stops_cleanly_on_sigterm(
    company, sandbox_settings, live_receiver, broker, intacct, flexpoint
):
    settings = sandbox_settings
    port = free_port()
    company.webhooks(enabled=False)
    company.create(CUSTOMERS, {"id": "C-1", "name": "One", "status": "active"})
    secrets = [
        settings.intacct_client_secret,
        settings.flexpoint_api_token,
        *live_receiver.connection.webhook_secrets,
    ]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "FLEXSYNC_ENV": "test",
        "AMQP_URL": settings.amqp_url,
        "DATABASE_URL": settings.database_url,
        "FLEXSYNC_SECRET_KEY": ",".join(settings.flexsync_secret_key),
        "INTACCT_API_URL": settings.intacct_api_url,
        "INTACCT_CLIENT_SECRET": settings.intacct_client_secret,
        "FLEXPOINT_API_URL": settings.flexpoint_api_url,
        "FLEXPOINT_API_TOKEN": settings.flexpoint_api_token,
        "RECONCILE_INTERVAL_SECONDS": "1",
        # No gap is known (the webhooks were switched off in Intacct): the quiet cadence sweeps.
        "RECONCILE_QUIET_INTERVAL_SECONDS": "1",
        "PORT": str(port),
        "LOG_FORMAT": "json",
        "FLEXSYNC_METRICS_TOKEN": METRICS_TOKEN,
    }
    process = subprocess.Popen(
        [sys.executable, "-c", "from cli.processes import reconcile; reconcile(obj={})"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        events = lambda: [json.loads(line).get("event") for line in lines if line.startswith("{")]  # noqa: E731
        customers = lambda: [  # noqa: E731
            line for line in list(lines) if '"reconcile_swept"' in line and '"customers"' in line
        ]
        # A sweep's per-resource lines come before its closing line: wait for both.
        wait_until(
            lambda: len(customers()) >= 2 and events().count("reconcile_sweep_done") >= 2,
            timeout=60,
            message="two whole sweeps, customers included",
        )
        swept_before = sum(1 for line in list(lines) if '"reconcile_swept"' in line)
        scraper = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", headers=scraper, timeout=10).text
        company_id = live_receiver.connection.company_id
        assert company_id not in metrics  # a keyed tag stands for the company (issue 30 #17)
        tag = company_tagger(settings.flexsync_secret_key)(company_id)
        counted = {
            line.split("purpose=")[1].split('"')[1]: float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("flexsync_reconcile_intacct_calls_total{") and f'company="{tag}"' in line
        }
        # One token for the process's life; at least one query per resource sweep logged so far.
        assert counted.get("token") == 1.0, counted
        assert counted.get("sweep", 0) >= max(swept_before, 10), (counted, swept_before)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(10)
    output = "".join(lines)
    assert "reconcile_stopped" in output
    swept = [json.loads(line) for line in lines if '"reconcile_swept"' in line]
    assert [s["published"] for s in swept if s["resource"] == "customers"][:2] == [1, 1]
    for secret in secrets:
        assert secret not in output


def test_once_also_drains_intacct_s_event_queue(company, sandbox_settings, live_receiver, intacct, broker):
    """Without --resource, --once takes what Intacct queued of lost webhooks, as the process does."""
    connection_id = live_receiver.connection.connection_id
    down = socket.socket()
    down.bind(("127.0.0.1", 0))  # bound, never listening: every delivery is refused
    hooks = f"{company.admin}/companies/{COMPANY}/webhooks"
    with down:
        requests.patch(hooks, json={"url": f"http://127.0.0.1:{down.getsockname()[1]}/down"}, timeout=10)
        company.create(CUSTOMERS, {"id": "C-9", "name": "Queued Ltd", "status": "active"})
        assert intacct.simulator.webhooks.wait_idle(60), "Intacct did not give up in time"
    queue = f"{intacct.base_url}/sandbox/companies/{COMPANY}/event-queue"
    assert len(requests.get(queue, timeout=10).json()["events"]) == 1

    result = invoke(sandbox_settings, "--once", "--connection", connection_id)
    assert result.exit_code == 0, result.output
    assert (
        f"{connection_id} event queue: drained, 1 event(s), published 1, 0 already delivered" in result.output
    )
    assert requests.get(queue, timeout=10).json()["events"] == [], "acknowledged in Intacct"
