"""What every benchmark here shares: its output conventions, broker and port helpers, and the
run frame that cleans up (servers, vhosts, temp dirs) on success, failure and Ctrl-C alike."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any


def progress(message: str) -> None:
    """A progress line, on stderr: stdout keeps only the summary lines."""
    print(f"  . {message}", file=sys.stderr, flush=True)


def figure(message: str) -> None:
    """One summary line of a figure, on stdout."""
    print(message, flush=True)


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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
