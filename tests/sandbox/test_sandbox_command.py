"""`flexsync sandbox` runs both simulators, keeps their data where told, and stops on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys

import requests

from tests.conftest import free_port, wait_until


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def test_the_sandbox_command_serves_both_and_stops_cleanly(tmp_path):
    intacct_port, flexpoint_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "sandbox",
            "--intacct-port",
            str(intacct_port),
            "--flexpoint-port",
            str(flexpoint_port),
            "--data-dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(
            lambda: _answers(f"http://127.0.0.1:{intacct_port}/sandbox/health"),
            timeout=30,
            message="the Intacct simulator",
        )
        wait_until(
            lambda: _answers(f"http://127.0.0.1:{flexpoint_port}/sandbox/health"),
            timeout=30,
            message="the FlexPoint simulator",
        )
        jwks = requests.get(f"http://127.0.0.1:{intacct_port}/.well-known/jwks.json", timeout=5).json()
        assert jwks["keys"] and jwks["keys"][0]["kty"] == "RSA"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert f"INTACCT_API_URL=http://127.0.0.1:{intacct_port}/ia/api/v1" in output
    assert "sandbox stopped" in output
    assert {path.name for path in tmp_path.iterdir()} >= {"intacct.db", "flexpoint.db"}
