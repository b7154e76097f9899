"""bench/receiver.py's --profile: py-spy samples a server's gunicorn workers during the peak runs,
and the busy samples are summed up by own time, by inclusive time and by what the thread runs."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from bench.common import progress
from bench.receiver_proc import gunicorn_workers


def start_profilers(
    args: argparse.Namespace, kind: str, master: int, duration: float, label: str, prefix: Path
) -> list[tuple[subprocess.Popen, Path]]:
    """With --profile, py-spy samples each gunicorn worker of ``kind`` (the children of its
    ``master``) during a peak run, into ``<prefix>-<pid>.txt``."""
    if kind not in args.profile or "peak, round" not in label:
        return []
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    profilers = []
    for pid in gunicorn_workers(master):
        path = Path(f"{prefix}-{pid}.txt")
        command = [py_spy, "record", "--pid", pid, "--duration", str(max(1, round(duration)))]
        command += ["--rate", "200", "--format", "raw", "--output", str(path), "--nonblocking", "--gil"]
        profilers.append(
            (subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), path)
        )
    return profilers


def finish_profilers(
    args: argparse.Namespace, profilers: list[tuple[subprocess.Popen, Path]], label: str
) -> None:
    """Wait for the profilers, and print the top entries by own time, by inclusive time and by
    what each thread runs (idle threads left out); with --profile-dir, keep the raw profiles."""
    if not profilers:
        return
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    by_thread: dict[str, int] = {}
    total = 0
    for process, path in profilers:
        process.wait(timeout=60)
        if not path.exists():
            continue
        if args.profile_dir:
            args.profile_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, args.profile_dir / f"{label.replace(' ', '-').replace(',', '')}-{path.name}")
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = [
                frame.split(" (")[0] + " (" + frame.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1] + ")"
                for frame in stack.split(";")
            ]
            # Idle threads (waiting in select, a lock, or the socket accept) are not CPU.
            if frames[-1].startswith(("select ", "wait ", "_wait_for_tstate_lock", "poll ", "accept ")):
                continue
            total += int(count)
            own[frames[-1]] = own.get(frames[-1], 0) + int(count)
            # What the thread runs: its first frame below threading's own bootstrap.
            root = next((f for f in frames if not f.endswith("(threading.py)")), frames[0])
            by_thread[root] = by_thread.get(root, 0) + int(count)
            for frame in set(frames):
                inclusive[frame] = inclusive.get(frame, 0) + int(count)
    if not total:
        progress(f"profile of '{label}': no samples")
        return

    def top(table: dict[str, int], n: int) -> str:
        rows = sorted(table.items(), key=lambda item: -item[1])[:n]
        return "\n".join(f"      {count / total:6.1%}  {name}" for name, count in rows)

    progress(f"profile of '{label}' ({total} busy samples); top by own time:\n{top(own, args.profile_top)}")
    progress(f"profile of '{label}'; top by inclusive time:\n{top(inclusive, args.profile_top * 2)}")
    progress(f"profile of '{label}'; by what the thread runs:\n{top(by_thread, 8)}")
