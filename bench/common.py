"""What every benchmark here shares: its output conventions, broker, port and process helpers, and the
run frame that cleans up (servers, vhosts, temp dirs) on success, failure and Ctrl-C alike."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
STOP_TIMEOUT = 30.0


def progress(message: str) -> None:
    """A progress line, on stderr: stdout keeps only the summary lines."""
    print(f"  . {message}", file=sys.stderr, flush=True)


def figure(message: str) -> None:
    """One summary line of a figure, on stdout."""
    print(message, flush=True)


def met(ok: bool) -> str:
    """A target's verdict in a summary line."""
    return "MET" if ok else "NOT MET"


def loud(message: str) -> None:
    banner = "!" * 78
    print(f"{banner}\n!! {message}\n{banner}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    """The benchmark could not run (set-up failed); the message says why."""


class RunFailed(RuntimeError):
    """What is measured broke during the run (a worker died); the message says how."""


def rabbitmqctl(*args: str) -> str:
    completed = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
    if completed.returncode != 0:
        raise BenchError(
            f"rabbitmqctl {' '.join(args)} failed: {(completed.stderr or completed.stdout).strip()}"
        )
    return completed.stdout


def create_vhost(
    stack: contextlib.ExitStack, amqp_url: str, run_tag: str, *, delete_attempts: int = 1
) -> tuple[str, str]:
    """A RabbitMQ vhost of the run's own, ``flexsync-bench-<run_tag>``, deleted when ``stack``
    closes; returns its name and ``amqp_url`` pointed at it. rabbitmqctl makes it, so the broker
    must run on this host. The deletion is tried ``delete_attempts`` times, 3 s apart."""
    parts = urlsplit(amqp_url)
    if parts.hostname not in ("localhost", "127.0.0.1", "::1") or not shutil.which("rabbitmqctl"):
        raise BenchError(
            "the benchmark creates its own vhost with rabbitmqctl, so RabbitMQ must run on this host "
            f"(AMQP_URL host is {parts.hostname!r}; rabbitmqctl "
            f"{'found' if shutil.which('rabbitmqctl') else 'not found'})"
        )
    vhost = f"flexsync-bench-{run_tag}"
    progress(f"creating RabbitMQ vhost {vhost}")
    rabbitmqctl("add_vhost", vhost)
    stack.callback(delete_vhost, vhost, attempts=delete_attempts)
    rabbitmqctl("set_permissions", "-p", vhost, parts.username or "guest", ".*", ".*", ".*")
    return vhost, urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), "", ""))


def delete_vhost(vhost: str, attempts: int = 1) -> None:
    """Delete the run's vhost; a warning, not an error, when it cannot be done."""
    progress(f"deleting RabbitMQ vhost {vhost}")
    # A broker being restarted (by someone else's test, say) refuses for a while: retry.
    for attempt in range(attempts):
        try:
            rabbitmqctl("delete_vhost", vhost)
            return
        except Exception as exc:
            error = str(exc).splitlines()[0]
        if attempt < attempts - 1:
            time.sleep(3)
    print(
        f"warning: could not delete vhost {vhost}: {error}; remove it with `rabbitmqctl delete_vhost {vhost}`",
        file=sys.stderr,
    )


def declare_run_topology(amqp_url: str, topology: Any) -> str:
    """Declare ``topology`` in the run's vhost; returns the broker's version."""
    from kombu import Connection

    from broker.topology import declare_topology

    with Connection(amqp_url, connect_timeout=5) as connection:
        connection.ensure_connection(max_retries=2)
        declare_topology(connection, topology)
        version = (getattr(connection.connection, "server_properties", {}) or {}).get("version", "?")
    return version.decode() if isinstance(version, bytes) else str(version)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET ``path`` from a server on 127.0.0.1: its status and body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class Process:
    """A subprocess in its own session (a Ctrl-C reaches only this script), logging to a file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.popen = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        """SIGTERM, then up to STOP_TIMEOUT for it to end; else SIGKILL to its process group."""
        if not self.alive():
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(
                f"warning: {self.name} did not stop within {STOP_TIMEOUT:.0f} s of SIGTERM; killing its "
                f"process group {self.pid}",
                file=sys.stderr,
            )
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=5)

    def tail(self, lines: int = 25) -> str:
        """The last ``lines`` of its log, each prefixed with its name."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(f"    {self.name}| {line}" for line in text[-lines:]) or "    (log is empty)"


def process_stat(pid: int | str) -> tuple[str, list[str]] | None:
    """Process ``pid``'s command name and the fields of /proc/<pid>/stat after it (from the
    state on: [2] is the process group, [11] and [12] utime and stime in clock ticks); None
    once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
        return stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
    except (OSError, ValueError):  # gone, or gone halfway through the read
        return None


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds process ``pid`` has used so far (Linux /proc; 0 once gone)."""
    found = process_stat(pid)
    if found is None:
        return 0.0
    fields = found[1]
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_switches(pid: int | str) -> int:
    """How many times the threads of process ``pid`` alive now were switched out so far, by
    choice (waiting on a lock, a socket) or not (/proc/<pid>/task/*/status; 0 once gone)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/status") as status:
                for line in status:
                    name, _, value = line.partition(":")
                    if name in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
                        total += int(value)
        except (OSError, ValueError):  # the thread ended meanwhile
            continue
    return total


def machine_ticks() -> list[int] | None:
    """The whole machine's CPU ticks so far, all CPUs together (/proc/stat's first line):
    user, nice, system, idle, iowait, irq, softirq, steal (guest time is inside user); None
    where there is no /proc/stat."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(value) for value in stat.readline().split()[1:9]]
    except OSError:
        return None
    return ticks if len(ticks) == 8 else None


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy so far: all but idle and iowait."""
    ticks = machine_ticks()
    if ticks is None:
        return 0.0
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def run_guarded(name: str, body: Callable[[contextlib.ExitStack], int], *, cleaned: str) -> int:
    """Run ``body(stack)``; whatever happens, the clean-ups it pushed on ``stack`` run, in reverse.

    Exit status: ``body``'s own, 1 when the run failed (:class:`RunFailed`), 2 when it could not
    be set up (:class:`BenchError`), 130 on Ctrl-C or SIGTERM. ``cleaned`` says what an
    interruption cleaned up.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    stack = contextlib.ExitStack()
    try:
        try:
            status = body(stack)
        finally:
            # A second Ctrl-C must not cut the clean-ups short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            stack.close()
    except KeyboardInterrupt:
        print(f"interrupted: {cleaned}", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    except RunFailed as exc:
        loud(f"{name}: {exc}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    progress(f"done in {time.monotonic() - started:.0f} s")
    return status
