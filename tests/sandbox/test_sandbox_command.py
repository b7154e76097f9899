"""`flexsync sandbox` runs both simulators, keeps their data where told, and stops on SIGTERM; the
same command runs from the sandbox's own distribution with none of the service importable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

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


ROOT = Path(__file__).resolve().parents[2]

# Run before the sandbox: every package of the service's distribution fails to import, as on a
# machine where only flexsync-sandbox is installed.
WITHOUT_THE_SERVICE = """
import runpy, sys
PRODUCT = set(sys.argv[1].split(","))
class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in PRODUCT:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Absent())
sys.argv = ["sandbox", *sys.argv[2:]]
runpy.run_module("sandbox", run_name="__main__")
"""


def test_the_sandbox_runs_without_the_service_on_ports_from_the_environment(tmp_path):
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    product = ",".join(p.rstrip("*") for p in patterns["include"])
    intacct_port, flexpoint_port = free_port(), free_port()
    env = {
        **os.environ,
        "SANDBOX_INTACCT_PORT": str(intacct_port),
        "SANDBOX_FLEXPOINT_PORT": str(flexpoint_port),
    }
    process = subprocess.Popen(
        [sys.executable, "-c", WITHOUT_THE_SERVICE, product, "--data-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(
            lambda: process.poll() is not None or _answers(f"http://127.0.0.1:{intacct_port}/sandbox/health"),
            timeout=30,
            message="the Intacct simulator",
        )
        wait_until(
            lambda: (
                process.poll() is not None or _answers(f"http://127.0.0.1:{flexpoint_port}/sandbox/health")
            ),
            timeout=30,
            message="the FlexPoint simulator",
        )
        assert process.poll() is None, "the sandbox stopped early"
        jwks = requests.get(f"http://127.0.0.1:{intacct_port}/.well-known/jwks.json", timeout=5).json()
        assert jwks["keys"] and jwks["keys"][0]["kty"] == "RSA"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "No module named" not in output
    assert f"FLEXPOINT_API_URL=http://127.0.0.1:{flexpoint_port}" in output
    assert "sandbox stopped" in output
