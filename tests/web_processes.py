"""Real ``flexsync web`` processes (gunicorn) for tests that need the HTTP server itself."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from config import Settings
from tests.conftest import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent


def ready(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        connection.request("GET", "/readyz")
        return connection.getresponse().status == 200
    except OSError:
        return False


@contextlib.contextmanager
def running_receivers(
    settings: Settings, logs_dir: Path, count: int, *, threads: int = 4
) -> Iterator[list[int]]:
    """``count`` receiver processes on one database and broker, each ready and consuming
    connection changes; yields their ports, and stops them (SIGTERM, then SIGKILL) after."""
    processes, ports, logs = [], [], []
    for n in range(count):
        port = free_port()
        log = logs_dir / f"web-{n}.log"
        environment = {
            **os.environ,
            "FLEXSYNC_ENV": "test",
            "AMQP_URL": settings.amqp_url,
            "DATABASE_URL": settings.database_url,
            "FLEXSYNC_SECRET_KEY": ",".join(settings.flexsync_secret_key),
            "PORT": str(port),
            "LOG_FORMAT": "console",
            "LOG_LEVEL": "INFO",
        }
        environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
        command = [
            str(Path(sys.executable).parent / "flexsync"),
            "web",
            "--workers",
            "1",
            "--threads",
            str(threads),
        ]
        with open(log, "wb") as out:
            processes.append(
                subprocess.Popen(
                    command,
                    cwd=ROOT,
                    env=environment,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        ports.append(port)
        logs.append(log)
    try:
        for port, log in zip(ports, logs, strict=True):
            wait_until(lambda port=port: ready(port), timeout=60, message=f"receiver on {port} ready")
            wait_until(
                lambda log=log: "connection_changes_listening" in log.read_text(errors="replace"),
                timeout=30,
                message="the receiver's change listener consuming",
            )
        yield ports
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
