"""What bench/receiver.py reads of a server's gunicorn workers and of the machine from /proc:
which workers there are, how many of wrk's connections each holds, their CPU time and thread
switches, and the CPU time the hypervisor gave other guests."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from bench.common import machine_ticks, process_stat, thread_switches


def gunicorn_workers(master: int) -> list[str]:
    """The pids of the gunicorn workers of the server whose master is ``master`` (its children)."""
    pids = []
    for entry in Path("/proc").iterdir():
        found = process_stat(entry.name) if entry.name.isdigit() else None
        # From the state on, [1] is the parent's pid.
        if found is not None and found[1][1] == str(master):
            pids.append(entry.name)
    return sorted(pids)


def connection_split(port: int, workers: list[str], connections: int, timeout: float = 5.0) -> list[int]:
    """How many of wrk's connections each of the server's ``workers`` holds, once all are open.

    Read from /proc: the established sockets on the server's port, matched by inode to the
    workers' file descriptors. Gives what it saw at ``timeout`` if not all are open by then.
    """
    deadline = time.monotonic() + timeout
    while True:
        inodes = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError), open(table) as lines:
                for line in list(lines)[1:]:
                    fields = line.split()
                    # fields: sl, local address, remote address, state (01: established), ..., inode
                    if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(f"socket:[{fields[9]}]")
        split = []
        for pid in workers:
            held = 0
            with contextlib.suppress(OSError):
                for fd in os.scandir(f"/proc/{pid}/fd"):
                    with contextlib.suppress(OSError):
                        held += os.readlink(fd.path) in inodes
            split.append(held)
        if sum(split) >= connections or time.monotonic() >= deadline:
            return split
        time.sleep(0.01)


def worker_switches(workers: list[str]) -> dict[str, int]:
    """Thread switches so far of each of ``workers``, by pid."""
    return {pid: thread_switches(pid) for pid in workers}


def server_cpu_seconds(kind: str, pid: int) -> dict[str, float]:
    """CPU time so far of the process group of server ``kind`` (its master ``pid``) and of the
    broker (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    group = os.getpgid(pid)
    totals = {kind: 0.0, "rabbitmq": 0.0, f"{kind} sys": 0.0}
    for entry in Path("/proc").iterdir():
        found = process_stat(entry.name) if entry.name.isdigit() else None
        if found is None:
            continue  # not a process, or it ended meanwhile
        name, fields = found
        seconds = (int(fields[11]) + int(fields[12])) / tick
        if int(fields[2]) == group:
            totals[kind] += seconds
            totals[f"{kind} sys"] += int(fields[12]) / tick
        elif name == "beam.smp":
            totals["rabbitmq"] += seconds
    return totals


def steal_ticks() -> tuple[int, int] | None:
    """(steal, all) CPU ticks of the whole machine so far; None where there is no /proc/stat."""
    ticks = machine_ticks()
    return None if ticks is None else (ticks[7], sum(ticks))
