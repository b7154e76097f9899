"""``flexsync backfill``: foreground import with progress bars, clear errors, resume after a kill."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import requests
from click.testing import CliRunner

from tests.conftest import wait_until
from workers.backfill.commands import backfill

from .conftest import assert_flexpoint_equals_intacct, intacct_records, query_calls

ROOT = Path(__file__).resolve().parents[2]
INVOICES = "accounts-receivable/invoice"


def invoke(parts, *args: str):
    return CliRunner().invoke(backfill, list(args), obj={"settings": parts.settings}, catch_exceptions=False)


def test_runs_the_import_with_a_progress_bar_per_resource(parts, intacct):
    result = invoke(parts, parts.connection.connection_id, "--page-size", "9")
    assert result.exit_code == 0, result.output
    assert "invoices" in result.output and "customers" in result.output
    assert "completed:" in result.output and "skipped (drafts)" in result.output
    assert_flexpoint_equals_intacct(parts, intacct)
    # Run again: a completed import is imported again from scratch.
    requests.delete(f"{intacct.base_url}/sandbox/stats", timeout=10).raise_for_status()
    assert invoke(parts, parts.connection.connection_id, "--page-size", "9").exit_code == 0
    # Every invoice record: the 60 seeded and their reversal records.
    assert query_calls(intacct, INVOICES) == 1 + math.ceil(len(intacct_records(intacct, INVOICES)) / 9)


def test_unknown_and_disconnected_connections_are_clear_errors(parts):
    result = invoke(parts, "no-such-connection")
    assert result.exit_code == 1 and "no connection no-such-connection" in result.output
    parts.connections.disconnect(parts.connection.connection_id)
    result = invoke(parts, parts.connection.connection_id)
    assert result.exit_code == 1 and "is disconnected" in result.output
    assert parts.backfills.get(parts.connection.connection_id) is None


def test_a_failing_run_reports_the_reason_and_the_next_run_resumes(parts, intacct):
    # FlexPoint refuses its bearer token: permanent, so the run fails at once with the reason.
    parts_bad = parts.settings.with_overrides(flexpoint_api_token="wrong-token")
    result = CliRunner().invoke(backfill, [parts.connection.connection_id], obj={"settings": parts_bad})
    assert result.exit_code == 1
    assert "failed: entities: FlexPointUnauthorized" in result.output and "resume" in result.output
    failed = parts.backfills.get(parts.connection.connection_id)
    assert failed.state == "failed" and failed.resume_at is None  # permanent: no automatic resume
    assert invoke(parts, parts.connection.connection_id).exit_code == 0
    assert_flexpoint_equals_intacct(parts, intacct)


def test_a_killed_import_resumes_from_its_checkpoint_without_gaps(parts, intacct, tmp_path):
    connection_id = parts.connection.connection_id
    requests.patch(
        f"{intacct.base_url}/sandbox/faults", json={"latencyMs": 40}, timeout=10
    ).raise_for_status()
    settings = parts.settings
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("FLEXSYNC_", "INTACCT_", "FLEXPOINT_"))},
        "FLEXSYNC_ENV": "test",
        "DATABASE_URL": settings.database_url,
        "FLEXSYNC_SECRET_KEY": ",".join(settings.flexsync_secret_key),
        "INTACCT_API_URL": settings.intacct_api_url,
        "INTACCT_CLIENT_SECRET": settings.intacct_client_secret,
        "FLEXPOINT_API_URL": settings.flexpoint_api_url,
        "FLEXPOINT_API_TOKEN": settings.flexpoint_api_token,
        "LOG_FORMAT": "console",
        "PYTHONPATH": str(ROOT),
    }
    script = "import sys; from workers.backfill.commands import backfill; backfill.main(sys.argv[1:], prog_name='backfill')"
    with open(tmp_path / "killed.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", script, connection_id, "--page-size", "5"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: (
                (parts.backfills.checkpoints(connection_id).get("invoices") or None)
                and parts.backfills.checkpoints(connection_id)["invoices"].imported >= 10
            ),
            timeout=60,
            message="the killed run halfway through the invoices",
        )
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    at_kill = parts.backfills.checkpoints(connection_id)["invoices"]
    assert not at_kill.done and parts.backfills.get(connection_id).state == "running"

    requests.patch(f"{intacct.base_url}/sandbox/faults", json={"latencyMs": 0}, timeout=10).raise_for_status()
    requests.delete(f"{intacct.base_url}/sandbox/stats", timeout=10).raise_for_status()
    result = invoke(parts, connection_id, "--page-size", "5")  # no wait for the dead holder's lease
    assert result.exit_code == 0, result.output
    assert_flexpoint_equals_intacct(parts, intacct)
    invoices = len(intacct_records(intacct, INVOICES))  # the 60 seeded and their reversal records
    assert query_calls(intacct, INVOICES) == 1 + math.ceil((invoices - at_kill.imported) / 5)
    assert query_calls(intacct, "accounts-receivable/customer") == 0
