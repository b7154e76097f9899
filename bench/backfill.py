"""Backfill benchmark, QUALITY P4: a company's history from the Intacct simulator into FlexPoint.

    .venv/bin/python bench/backfill.py [--invoices 100000] [--small 10000] [--lines 3] [--page-size 2000]

Both simulators run in their own processes (``flexsync sandbox ... serve``), Intacct with its
default cap of 2 concurrent requests per company. Two companies are seeded, one with
``--small`` invoices and one with ``--invoices`` (3 lines each, a customer per 10 invoices; no
adjustments, journal entries or other receipts; the seed's payments and deposits come along).
Each backfill runs in a subprocess of its own (this script with ``--child``), timed from its
start to its end; its peak RSS is read from ``wait4``. Then FlexPoint's record counts are
compared with Intacct's. Progress goes to stderr, one summary line per figure to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from bench.common import BenchError, RunFailed, figure, free_port, progress, run_guarded  # noqa: E402

SECONDS_TARGET = 60.0
RSS_TARGET_MB = 250.0
FLAT_TARGET = 1.3
CLIENT_SECRET = "bench-intacct-secret"  # noqa: S105 - the simulator's, made up for the run
TOKEN = "bench-flexpoint-token"  # noqa: S105


def met(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


class Simulators:
    """The Intacct and FlexPoint simulators, each in a process of its own, stopped on exit."""

    def __init__(self, workdir: Path, stack: contextlib.ExitStack) -> None:
        self.intacct_port, self.flexpoint_port = free_port(), free_port()
        self.workdir = workdir
        self.processes: dict[str, subprocess.Popen] = {}
        flexsync = [sys.executable, "-c", "from cli.main import main; main()", "sandbox"]
        env = {**_clean_env(), "LOG_LEVEL": "WARNING", "LOG_FORMAT": "console"}
        commands = {
            "intacct": [*flexsync, "intacct", "serve", "--port", str(self.intacct_port),
                        "--data-dir", str(workdir / "intacct"), "--client-secret", CLIENT_SECRET],
            "flexpoint": [*flexsync, "flexpoint", "serve", "--port", str(self.flexpoint_port),
                          "--data-dir", str(workdir / "flexpoint"), "--token", TOKEN],
        }  # fmt: skip
        for name, command in commands.items():
            log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed by the stack
            stack.callback(log.close)
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            stack.callback(_stop, process)
            self.processes[name] = process
            progress(f"started the {name} simulator, pid {process.pid}")
        self.intacct = f"http://127.0.0.1:{self.intacct_port}"
        self.flexpoint = f"http://127.0.0.1:{self.flexpoint_port}"
        for url in (self.intacct, self.flexpoint):
            _wait_health(url)

    def seed(self, company: str, invoices: int, lines: int) -> dict[str, int]:
        body = {
            "customers": max(1, invoices // 10),
            "invoices": invoices,
            "linesPerInvoice": lines,
            "adjustments": 0,
            "journalEntries": 0,
            "otherReceipts": 0,
            "seed": 7,
            "asOf": int(time.time()) - 600,
        }
        response = requests.post(f"{self.intacct}/sandbox/companies/{company}/seed", json=body, timeout=600)
        if response.status_code >= 300:
            raise BenchError(f"seeding {company}: HTTP {response.status_code} {response.text[:300]}")
        return response.json()["created"]

    def stored(self, account: str) -> dict[str, dict[str, int]]:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        summary = requests.get(f"{self.flexpoint}/sandbox/summary", headers=headers, timeout=60).json()
        return summary["accounts"].get(account, {}).get("resources", {})


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEXSYNC_", "FLEXPOINT_", "INTACCT_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return env


def _wait_health(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{url}/sandbox/health", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise BenchError(f"the simulator at {url} did not answer within {timeout:.0f} s")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _connection(database_url: str, key: str, company: str) -> tuple[str, str]:
    from store.crypto import SecretBox
    from store.db import create_engine_for, upgrade
    from workers.connections.store import ConnectionStore

    engine = create_engine_for(database_url)
    upgrade(engine)
    record = ConnectionStore(engine, SecretBox([key])).save(
        connection_id=str(uuid.uuid4()),
        account_id=f"bench-{company.lower()}",
        company_id=company,
        entity_id=None,
        user_id="ws_flexpoint",
        state="connected",
    )
    engine.dispose()
    return record.connection_id, record.account_id


def measure(sims: Simulators, workdir: Path, company: str, invoices: int, args: argparse.Namespace) -> dict:
    """Seed, backfill in a child process, check FlexPoint; the child's time, peak RSS and counts."""
    from cryptography.fernet import Fernet

    created = sims.seed(company, invoices, args.lines)
    progress(f"seeded {company}: {created}")
    key = Fernet.generate_key().decode()
    database_url = f"sqlite:///{workdir}/{company.lower()}.db"
    connection_id, account = _connection(database_url, key, company)
    env = {
        **_clean_env(),
        "FLEXSYNC_ENV": "development",
        "DATABASE_URL": database_url,
        "FLEXSYNC_SECRET_KEY": key,
        "INTACCT_API_URL": f"{sims.intacct}/ia/api/v1",
        "INTACCT_CLIENT_SECRET": CLIENT_SECRET,
        "FLEXPOINT_API_URL": sims.flexpoint,
        "FLEXPOINT_API_TOKEN": TOKEN,
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "console",
    }
    command = [sys.executable, str(Path(__file__).resolve()), "--child", connection_id,
               "--page-size", str(args.page_size)]  # fmt: skip
    output = workdir / f"{company.lower()}.out"
    requests.delete(f"{sims.intacct}/sandbox/stats", timeout=30).raise_for_status()
    with open(output, "wb") as out:
        child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        _pid, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    text = output.read_text(errors="replace")
    if child.returncode != 0:
        raise RunFailed(f"the backfill of {company} exited with {child.returncode}:\n{text[-2000:]}")
    result = json.loads(text.strip().splitlines()[-1])
    if result["outcome"] != "completed":
        raise RunFailed(f"the backfill of {company} ended {result['outcome']}:\n{text[-2000:]}")
    stored = sims.stored(account)
    stats = requests.get(f"{sims.intacct}/sandbox/stats", params={"companyId": company}, timeout=30).json()
    result["intacct"] = {k: stats[k] for k in ("totalCalls", "tooManyRequests", "peakInFlight")}
    result["rss_mb"] = usage.ru_maxrss / 1024  # kilobytes on Linux
    result["stored"] = {
        name: counts.get("live", 0) + counts.get("deleted", 0) for name, counts in stored.items()
    }
    result["created"] = created
    return result


def check(result: dict, label: str) -> None:
    """Every record read was stored (drafts as tombstones); nothing unmappable."""
    read, stored = result["read"], result["stored"]
    missing = {r: n for r, n in read.items() if n - result["unmappable"].get(r, 0) != stored.get(r, 0)}
    if missing:
        raise RunFailed(f"{label}: FlexPoint holds {stored}, the backfill read {read}")


def parent(args: argparse.Namespace) -> int:
    def body(stack: contextlib.ExitStack) -> int:
        workdir = Path(tempfile.mkdtemp(prefix="backfill-bench-"))
        stack.callback(lambda: subprocess.run(["rm", "-rf", str(workdir)], check=False))
        sims = Simulators(workdir, stack)
        small = measure(sims, workdir, "BENCH-SMALL", args.small, args)
        check(small, "small")
        progress(f"small run: {small['seconds']:.1f} s, peak RSS {small['rss_mb']:.0f} MB")
        large = measure(sims, workdir, "BENCH-LARGE", args.invoices, args)
        check(large, "large")
        records = sum(large["read"].values())
        ratio = large["rss_mb"] / small["rss_mb"]
        figure(
            f"P4 time: {args.invoices} invoices x {args.lines} lines + {args.invoices // 10} customers "
            f"({records} records in all, {large['read']}) backfilled in {large['seconds']:.1f} s "
            f"({records / large['seconds']:.0f} records/s); target <= {SECONDS_TARGET:.0f} s: "
            f"{met(large['seconds'] <= SECONDS_TARGET)}"
        )
        figure(f"P4 peak RSS at {args.invoices}: {large['rss_mb']:.0f} MB; target <= {RSS_TARGET_MB:.0f} MB: "
               f"{met(large['rss_mb'] <= RSS_TARGET_MB)}")  # fmt: skip
        figure(
            f"P4 flat memory: peak RSS {large['rss_mb']:.0f} MB at {args.invoices} vs {small['rss_mb']:.0f} MB "
            f"at {args.small} invoices = {ratio:.2f}x; target <= {FLAT_TARGET}x: {met(ratio <= FLAT_TARGET)}"
        )
        figure(f"P4 small run: {args.small} invoices in {small['seconds']:.1f} s; large run: drafts skipped "
               f"{large['skipped']}, unmappable {sum(large['unmappable'].values())}, FlexPoint counts match; "
               f"Intacct {large['intacct']}")  # fmt: skip
        return 0

    return run_guarded("backfill bench", body, cleaned="simulators stopped, temporary files removed")


def child(connection_id: str, page_size: int) -> int:
    """One backfill in this process, as ``flexsync backfill`` runs it; prints its result as JSON."""
    import threading

    from clients.flexpoint import FlexPointClient
    from clients.intacct import create_client
    from clients.intacct.slots import company_slots
    from config import load_settings
    from observability.logging import configure_logging
    from store.crypto import SecretBox
    from store.db import create_engine_for
    from workers.backfill.lease import new_holder
    from workers.backfill.runner import BackfillRunner, RunOptions
    from workers.backfill.store import BackfillStore
    from workers.connections.store import ConnectionStore

    settings = load_settings()
    configure_logging(settings)
    engine = create_engine_for(settings.database_url)
    store = BackfillStore(engine)
    options = RunOptions(page_size=page_size)
    runner = BackfillRunner(
        settings,
        store,
        intacct=create_client(settings, company_slots(settings, engine)),
        flexpoint=FlexPointClient.from_settings(settings, process="bench"),
        connections=ConnectionStore(engine, SecretBox.for_settings(settings)),
        options=options,
    )
    holder = new_holder()
    store.request(connection_id)
    store.claim(connection_id, holder, options.lease_seconds)
    started = time.perf_counter()
    outcome = runner.run(connection_id, holder, threading.Event())
    seconds = time.perf_counter() - started
    points = store.checkpoints(connection_id)
    result: dict[str, Any] = {
        "outcome": outcome,
        "seconds": seconds,
        "read": {r: p.imported for r, p in points.items() if p.imported},
        "skipped": sum(p.skipped for p in points.values()),
        "unmappable": {r: p.unmappable for r, p in points.items()},
    }
    print(json.dumps(result), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument(
        "--small", type=int, default=10_000, help="invoices of the first run (memory baseline)"
    )
    parser.add_argument("--lines", type=int, default=3)
    parser.add_argument("--page-size", type=int, default=2000)
    parser.add_argument("--child", metavar="CONNECTION_ID", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.page_size)
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
