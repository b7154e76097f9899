"""Sync worker benchmark, QUALITY P2 and P3: the project's workers against a plain consumer, in one run.

    .venv/bin/python bench/sync.py [--events 20000] [--companies 20] [--repeat-share 0.3] [--latency-ms 20]
                                   [--workers 2] [--freshness-rate 200] [--freshness-seconds 20]

Everything runs on this host: the Sage Intacct simulator and the FlexPoint simulator, each in its
own process (so neither competes for this script's GIL) with ``--latency-ms`` injected into every
API call through their admin APIs, and Intacct's cap of 2 concurrent requests per company; a
RabbitMQ vhost made for the run (deleted afterwards) with the project's topology; a fresh SQLite
store with one connection per simulated company.

P2, drain: the events are published (persistent, publisher confirms) before any consumer starts.
Then ``--workers`` processes of the project's ``flexsync sync`` drain them, timed from the moment
the first of them is up until every event is settled and the queues are empty. FlexPoint is
reset, the first ``--reference-events`` of the same events are published again and the
reference consumer written below (one GET + lines + one single-item upsert per event, 16
handlers, through the project's own Intacct client so the cap holds) drains them in this
process. Both rates are events per second, so the ratio compares like with like.

P3, freshness: with the project's workers running, events are published at a steady rate and
each one's freshness is FlexPoint's own ``updatedAt`` of the record (stamped by the FlexPoint
simulator when the write is applied) minus the event's publish time (its ``receivedAt``).

Progress goes to stderr; the summary, one line per figure, to stdout. Exit status 0 when the run
completed and every correctness check held (performance targets missed are reported, never an
error), 1 when a correctness check failed, 2 when the run could not be set up, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import json
import math
import os
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    BenchError,
    RunFailed,
    figure,
    free_port,
    loud,
    progress,
    rabbitmqctl,
    run_guarded,
)

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
USER_ID = "ws_flexpoint"
CAP_PER_COMPANY = 2  # Intacct's default tier, the simulator's default, INTACCT_MAX_CONCURRENCY_PER_COMPANY

RATIO_TARGET = 5.0
CALLS_PER_EVENT_TARGET = 0.05
P99_TARGET_SECONDS = 2.0

# The events' resources: mostly invoices and customers, some payments (all AR, queue sync.ar).
MIX: tuple[tuple[str, float], ...] = (("invoices", 0.6), ("customers", 0.3), ("payments", 0.1))
# Where each resource (and its lines) lives in the simulator.
OBJECTS = {
    "customers": "accounts-receivable/customer",
    "invoices": "accounts-receivable/invoice",
    "payments": "accounts-receivable/payment",
}
LINE_OBJECTS = {
    "invoices": "accounts-receivable/invoice-line",
    "payments": "accounts-receivable/payment-detail",
}
# The hot records the repeats fall on: this share of the records that get a first event.
HOT_SHARE = 0.05
STOP_TIMEOUT = 30.0
DEAD_LETTER = "dead-letter"


def met(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


# -- the events -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """The record an event names."""

    company: int  # index into the run's companies
    resource: str
    key: str
    record_id: str


def split(total: int, shares: Sequence[tuple[str, float]]) -> dict[str, int]:
    """``total`` divided by ``shares`` in whole numbers (largest remainders get the rest)."""
    raw = {name: total * share for name, share in shares}
    counts = {name: int(value) for name, value in raw.items()}
    for name in sorted(raw, key=lambda n: raw[n] - counts[n], reverse=True)[: total - sum(counts.values())]:
        counts[name] += 1
    return counts


def plan_events(
    pools: list[dict[str, list[tuple[str, str]]]], total: int, repeat_share: float, rng: random.Random
) -> tuple[list[Target], int]:
    """``total`` events spread evenly over the companies and by MIX over resources.

    In each company a share ``1 - repeat_share`` of its events each names a different record;
    the rest are repeats drawn at random from a few hot records (HOT_SHARE of those records),
    as webhooks arrive for records people keep editing. Returns the shuffled events and how
    many hot records there are.
    """
    companies = len(pools)
    events: list[Target] = []
    hot_records = 0
    for index in range(companies):
        count = total // companies + (1 if index < total % companies else 0)
        repeats = round(count * repeat_share)
        fresh_by = split(count - repeats, MIX)
        repeats_by = split(repeats, MIX)
        for resource, _ in MIX:
            pool = pools[index][resource]
            if fresh_by[resource] > len(pool):
                raise BenchError(
                    f"company {index + 1} has {len(pool)} {resource}, {fresh_by[resource]} needed (seed more)"
                )
            chosen = rng.sample(pool, fresh_by[resource])
            events.extend(Target(index, resource, key, rid) for key, rid in chosen)
            if repeats_by[resource]:
                hot = chosen[: max(1, round(len(chosen) * HOT_SHARE))] or rng.sample(pool, 1)
                hot_records += len(hot)
                events.extend(Target(index, resource, *rng.choice(hot)) for _ in range(repeats_by[resource]))
    rng.shuffle(events)
    return events, hot_records


def rfc3339(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


# -- helpers --------------------------------------------------------------------------------


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile of sorted ``values`` (``inf`` stands for "never")."""
    if not values:
        return math.nan
    rank = max(1, math.ceil(share * len(values)))
    return values[rank - 1]


def seconds_text(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:.3f} s"


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
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(f"    {self.name}| {line}" for line in text[-lines:]) or "    (log is empty)"


def cpu_seconds(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far of each named set of process groups, of RabbitMQ and of this script."""
    tick = os.sysconf("SC_CLK_TCK")
    by_group = {pgid: name for name, pgids in groups.items() for pgid in pgids}
    totals = {name: 0.0 for name in groups} | {"rabbitmq": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / tick
        group = by_group.get(int(fields[2]))
        if group is not None:
            totals[group] += seconds
        elif name == "beam.smp":
            totals["rabbitmq"] += seconds
    own = os.times()
    totals["bench"] = own.user + own.system
    return totals


def cpu_text(before: dict[str, float], after: dict[str, float], seconds: float) -> str:
    return ", ".join(
        f"{name} {after[name] - before.get(name, 0.0):.1f} s ({(after[name] - before.get(name, 0.0)) / seconds:.0%})"
        for name in after
        if seconds > 0
    )


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A worker's /metrics as {(sample name, labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = http_get(port, "/metrics")
    if status != 200:
        raise OSError(f"/metrics answered {status}")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total_of(samples: dict, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and wanted <= set(sample_labels)
    )


def merged(snapshots: Iterable[dict]) -> dict:
    out: Counter = Counter()
    for snapshot in snapshots:
        out.update(snapshot)
    return dict(out)


# -- results --------------------------------------------------------------------------------


@dataclass
class Drain:
    label: str
    events: int
    seconds: float  # from the first consumer up to the last event settled
    startup: float = 0.0  # process start-up before that (the project's workers)
    intacct: dict[str, Any] = field(default_factory=dict)  # the simulator's /sandbox/stats
    flexpoint: dict[str, Any] = field(default_factory=dict)  # the simulator's request counters
    cpu: str = ""
    errors: int = 0
    note: str = ""
    extra: int = 0  # events settled more than once (the workers' second looks)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Verdict:
    label: str
    ok: bool
    text: str


# -- the run --------------------------------------------------------------------------------


class Benchmark:
    def __init__(self, args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
        self.args = args
        self.stack = stack
        self.workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="flexsync-bench-sync-")))
        self.run_tag = uuid.uuid4().hex[:8]
        self.client_secret = f"bench-secret-{uuid.uuid4().hex}"
        self.flexpoint_token = f"bench-token-{uuid.uuid4().hex}"
        self.processes: dict[str, Process] = {}
        self.workers: list[tuple[Process, int]] = []
        self.rabbitmq_version = "?"
        self.verdicts: list[Verdict] = []
        self._mapped: dict[tuple[int, str, str], Any] = {}
        self._intacct_data: list[dict[str, Any]] | None = None

    # set-up ------------------------------------------------------------------------------

    def prepare(self) -> None:
        import requests

        self._configure_logging()
        self.http = requests.Session()
        self.stack.callback(self.http.close)
        self.amqp_url = self._create_vhost()
        self._declare_topology()
        self._watch_broker()
        self._start_simulators()
        self._seed()
        self._prepare_database()
        self._start_publisher()

    def _create_vhost(self) -> str:
        parts = urlsplit(self.args.amqp_url)
        if parts.hostname not in ("localhost", "127.0.0.1", "::1") or not shutil.which("rabbitmqctl"):
            raise BenchError(
                "the benchmark creates its own vhost with rabbitmqctl, so RabbitMQ must run on this host "
                f"(AMQP_URL host is {parts.hostname!r}; rabbitmqctl "
                f"{'found' if shutil.which('rabbitmqctl') else 'not found'})"
            )
        self.vhost = f"flexsync-bench-{self.run_tag}"
        progress(f"creating RabbitMQ vhost {self.vhost}")
        rabbitmqctl("add_vhost", self.vhost)
        self.stack.callback(self._delete_vhost)
        rabbitmqctl("set_permissions", "-p", self.vhost, parts.username or "guest", ".*", ".*", ".*")
        return urlunsplit((parts.scheme, parts.netloc, "/" + quote(self.vhost, safe=""), "", ""))

    def _delete_vhost(self) -> None:
        progress(f"deleting RabbitMQ vhost {self.vhost}")
        # A broker being restarted (by someone else's test, say) refuses for a while: retry.
        for attempt in range(10):
            try:
                rabbitmqctl("delete_vhost", self.vhost)
                return
            except Exception as exc:
                error = str(exc).splitlines()[0]
            if attempt < 9:
                time.sleep(3)
        print(
            f"warning: could not delete vhost {self.vhost}: {error}; "
            f"remove it with `rabbitmqctl delete_vhost {self.vhost}`",
            file=sys.stderr,
        )

    def _declare_topology(self) -> None:
        from kombu import Connection

        from broker.topology import build_topology, declare_topology

        self.topology = build_topology("1h")
        with Connection(self.amqp_url, connect_timeout=5) as connection:
            connection.ensure_connection(max_retries=2)
            declare_topology(connection, self.topology)
            version = (getattr(connection.connection, "server_properties", {}) or {}).get("version", "?")
            self.rabbitmq_version = version.decode() if isinstance(version, bytes) else str(version)
        # Everything the sync workers consume or re-route to, which must end empty.
        self.checked_queues = [
            q.name
            for q in self.topology.queues
            if (q.queue_arguments or {}).get("x-queue-type") != "stream"
            and not q.name.startswith("provisioning")
        ]

    def _watch_broker(self) -> None:
        """A connection held for the whole run: if it breaks, the broker went away meanwhile."""
        from kombu import Connection

        self._sentinel = Connection(self.amqp_url, connect_timeout=5, heartbeat=0)
        self._sentinel.ensure_connection(max_retries=2)
        self._sentinel_channel = self._sentinel.channel()
        self.stack.callback(self._sentinel.release)
        self.broker_interrupted = False

    def broker_still_up(self) -> bool:
        """False once the run's own broker connection broke (RabbitMQ stopped or restarted)."""
        if not self.broker_interrupted:
            try:
                self._sentinel_channel.queue_declare(queue="dead-letter", passive=True)
            except Exception:
                self.broker_interrupted = True
                loud(
                    "RabbitMQ went away during the run (stopped or restarted, by someone else?): the "
                    "figures and checks of this run are not meaningful; run it again on a quiet broker"
                )
        return not self.broker_interrupted

    def _flexsync(self) -> list[str]:
        script = Path(sys.executable).parent / "flexsync"
        return [str(script)] if script.exists() else [sys.executable, "-m", "cli.main"]

    def _base_env(self) -> dict[str, str]:
        from config import ENVIRONMENT_VARIABLES

        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ENVIRONMENT_VARIABLES and not k.startswith(("FLEXSYNC_", "FLEXPOINT_", "INTACCT_"))
        }
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        return env

    def _start_simulators(self) -> None:
        self.intacct_port, self.flexpoint_port = free_port(), free_port()
        base = [*self._flexsync(), "sandbox"]
        commands = {
            "intacct": [
                *base,
                "intacct",
                "serve",
                "--port",
                str(self.intacct_port),
                "--data-dir",
                str(self.workdir / "intacct"),
                "--client-secret",
                self.client_secret,
                "--concurrency-cap",
                str(CAP_PER_COMPANY),
            ],
            "flexpoint": [
                *base,
                "flexpoint",
                "serve",
                "--port",
                str(self.flexpoint_port),
                "--data-dir",
                str(self.workdir / "flexpoint"),
                "--token",
                self.flexpoint_token,
            ],
        }
        env = self._base_env() | {"LOG_LEVEL": "WARNING", "LOG_FORMAT": "console"}
        for name, command in commands.items():
            process = Process(f"{name}-sim", command, env, self.workdir / f"{name}.log")
            self.processes[name] = process
            self.stack.callback(self._stop, process)
            progress(f"started the {name} simulator, pid {process.pid}, port {getattr(self, name + '_port')}")
        self.intacct_url = f"http://127.0.0.1:{self.intacct_port}"
        self.flexpoint_url = f"http://127.0.0.1:{self.flexpoint_port}"
        self._wait_health("intacct", self.intacct_port)
        self._wait_health("flexpoint", self.flexpoint_port)
        latency = self.args.latency_ms
        answer = self._intacct("PATCH", "/faults", json={"latencyMs": latency})
        limits = self._intacct("GET", "/limits")
        flex = self._flexpoint("PUT", "/faults", json={"latencyMs": int(latency)})
        self.latency_seen = (answer["latencyMs"], flex["settings"]["latencyMs"], limits["concurrencyCap"])
        if answer["latencyMs"] != latency or flex["settings"]["latencyMs"] != int(latency):
            raise BenchError(f"the simulators did not take the latency: {answer}, {flex}")
        if limits["concurrencyCap"] != CAP_PER_COMPANY:
            raise BenchError(
                f"the Intacct simulator's cap is {limits['concurrencyCap']}, not {CAP_PER_COMPANY}"
            )

    def _wait_health(self, name: str, port: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.processes[name].alive():
                raise BenchError(f"the {name} simulator exited:\n{self.processes[name].tail()}")
            with contextlib.suppress(OSError):
                if http_get(port, "/sandbox/health")[0] == 200:
                    return
            time.sleep(0.1)
        raise BenchError(
            f"the {name} simulator did not answer within {timeout:.0f} s:\n{self.processes[name].tail()}"
        )

    def _stop(self, process: Process) -> None:
        if process.alive():
            progress(f"stopping {process.name} (SIGTERM to pid {process.pid})")
        process.stop()

    def _intacct(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, f"{self.intacct_url}/sandbox{path}", timeout=120, **kwargs)
        if response.status_code >= 400:
            raise BenchError(
                f"Intacct simulator {method} {path}: HTTP {response.status_code} {response.text[:300]}"
            )
        return None if response.status_code == 204 else response.json()

    def _flexpoint(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.flexpoint_token}"}
        response = self.http.request(
            method, f"{self.flexpoint_url}/sandbox{path}", headers=headers, timeout=120, **kwargs
        )
        if response.status_code >= 400:
            raise BenchError(
                f"FlexPoint simulator {method} {path}: HTTP {response.status_code} {response.text[:300]}"
            )
        return None if response.status_code == 204 else response.json()

    def _seed(self) -> None:
        args = self.args
        # Enough records that every event of the drain (and of the freshness run) can name a
        # record of its own where it must, with room to spare.
        per_company = max(args.events, args.freshness_rate * args.freshness_seconds) / args.companies
        fresh = split(math.ceil(per_company * (1 - args.repeat_share)), MIX)
        self.seed_counts = {
            "customers": max(50, math.ceil(fresh["customers"] * 1.4)),
            "invoices": max(200, math.ceil(max(fresh["invoices"], fresh["payments"] * 3) * 1.4)),
        }
        self.companies = [f"BENCH-{self.run_tag}-{i + 1:02d}" for i in range(args.companies)]
        started = time.monotonic()
        created: Counter = Counter()
        # The data is as of ten minutes ago: the events of a drained backlog name records changed
        # well before they are read. (A record read within its modification second is looked at
        # once more by the workers, 2 s later: realistic for live webhooks, but here it would only
        # depend on how fast the run got from seeding to reading.)
        as_of = int(time.time()) - 600
        for index, company in enumerate(self.companies):
            answer = self._intacct(
                "POST",
                f"/companies/{company}/seed",
                json={**self.seed_counts, "seed": index + 1, "asOf": as_of},
            )
            created.update(answer["created"])
        self.pools: list[dict[str, list[tuple[str, str]]]] = []
        for company in self.companies:
            pools = {}
            for resource, path in OBJECTS.items():
                rows = self._records(company, path)
                pools[resource] = [(str(r["key"]), str(r.get("id") or r["key"])) for r in rows]
            self.pools.append(pools)
        self.seeded = {path.rsplit("/", 1)[-1]: n // len(self.companies) for path, n in created.items()}
        progress(
            f"seeded {len(self.companies)} companies in {time.monotonic() - started:.1f} s, each about "
            + ", ".join(
                f"{n} {name}" for name, n in self.seeded.items() if name in ("customer", "invoice", "payment")
            )
        )

    def _records(self, company: str, path: str) -> list[dict[str, Any]]:
        answer = self._intacct("GET", f"/companies/{company}/objects/{path}", params={"size": 1_000_000})
        return answer["records"]

    def _prepare_database(self) -> None:
        from cryptography.fernet import Fernet

        from store.crypto import SecretBox
        from store.db import create_engine_for, upgrade
        from workers.connections.store import ConnectionStore

        self.fernet_key = Fernet.generate_key().decode()
        self.database_url = f"sqlite:///{self.workdir}/flexsync.db"
        self.engine = create_engine_for(self.database_url)
        self.stack.callback(self.engine.dispose)
        upgrade(self.engine)
        store = ConnectionStore(self.engine, SecretBox([self.fernet_key]))
        self.connections = []
        for index, company in enumerate(self.companies):
            self.connections.append(
                store.save(
                    connection_id=str(uuid.uuid4()),
                    account_id=f"bench-{self.run_tag}-{index + 1:02d}",
                    company_id=company,
                    entity_id=None,
                    user_id=USER_ID,
                    state="connected",
                )
            )

    def _start_publisher(self) -> None:
        from broker.publisher import ConfirmingPublisher
        from broker.topology import EVENTS_EXCHANGE

        self.publisher = ConfirmingPublisher(self.amqp_url, EVENTS_EXCHANGE.name)
        self.publisher.start(wait=10)
        self.stack.callback(self.publisher.close)
        if not self.publisher.ready:
            raise BenchError("the publisher could not connect to RabbitMQ")

    def settings(self, port: int = 8000):
        from config import Settings

        return Settings(
            flexsync_env="development",
            amqp_url=self.amqp_url,
            database_url=self.database_url,
            flexsync_secret_key=(self.fernet_key,),
            intacct_api_url=f"{self.intacct_url}/ia/api/v1",
            intacct_client_secret=self.client_secret,
            flexpoint_api_url=self.flexpoint_url,
            flexpoint_api_token=self.flexpoint_token,
            intacct_max_concurrency_per_company=CAP_PER_COMPANY,
            archive_max_age="1h",
            log_level="WARNING",
            log_format="console",
            port=port,
        )

    def _configure_logging(self) -> None:
        # The project's publisher and clients log through structlog, which would print to
        # stdout unless configured; stdout carries only the summary.
        from config import Settings
        from observability.logging import configure_logging

        configure_logging(
            Settings(
                flexsync_env="development",
                intacct_client_secret=self.client_secret,
                flexpoint_api_token=self.flexpoint_token,
                log_level="WARNING",
                log_format="console",
            ),
            stream=sys.stderr,
        )

    # events ------------------------------------------------------------------------------

    def envelope(self, target: Target, moment: float) -> tuple[str, bytes, str]:
        """Routing key, body and message id, as the receiver publishes them (ingest.intake): no
        AMQP headers, the envelope says what the message is."""
        from ingest.messages import envelope_body
        from schemas.catalog import BY_RESOURCE

        synced = BY_RESOURCE[target.resource]
        connection = self.connections[target.company]
        event_id = str(uuid.uuid4())
        when = rfc3339(moment)
        payload = {
            "object": synced.intacct_object,
            "action": "set",
            "key": target.key,
            "id": target.record_id,
            "companyId": connection.company_id,
            "occurredAt": when,
        }
        body = envelope_body(
            synced,
            connection_id=connection.connection_id,
            company_id=connection.company_id,
            event_id=event_id,
            action="update",
            key=target.key,
            record_id=target.record_id,
            occurred_at=when,
            received_at=when,
            idempotency_key=event_id,
            auth_scheme="jwt",
            payload=payload,
        )
        return synced.routing_key("update"), body, event_id

    def publish_all(self, messages: Sequence[tuple[str, bytes, str]], label: str) -> None:
        """Publish persistently with confirms pipelined (at most 2,000 awaiting), all confirmed."""
        started = time.monotonic()
        pending: collections.deque[Future[None]] = collections.deque()
        try:
            for routing_key, body, event_id in messages:
                pending.append(self.publisher.publish(routing_key, body, message_id=event_id))
                if len(pending) >= 2000:
                    pending.popleft().result(timeout=30)
            while pending:
                pending.popleft().result(timeout=30)
        except Exception as exc:
            raise BenchError(f"{label}: publishing failed: {type(exc).__name__}: {exc}") from None
        seconds = time.monotonic() - started
        progress(f"{label}: published {len(messages):,} events, all confirmed, in {seconds:.1f} s")

    def wait_for_depth(self, name: str, count: int, timeout: float = 30.0) -> None:
        """Quorum queues count a message once it is committed; wait until all are there."""
        from kombu import Connection

        deadline = time.monotonic() + timeout
        with Connection(self.amqp_url, connect_timeout=5) as connection:
            channel = connection.channel()
            while True:
                depth = self.queue_state(channel)[name][0]
                if depth >= count:
                    return
                if time.monotonic() > deadline:
                    raise BenchError(f"{name} holds {depth} messages, {count} were published and confirmed")
                time.sleep(0.05)

    def drained(self, channel: Any) -> bool:
        """Nothing ready in any queue the workers use or re-route to (passive declare, which asks
        the quorum queue's leader and so is exact). Messages a consumer holds are not counted:
        with consumers attached, this says "empty" only together with their settled count."""
        return not any(ready for ready, _ in self.queue_state(channel).values())

    def queue_state(self, channel: Any) -> dict[str, tuple[int, int]]:
        state = {}
        for name in self.checked_queues:
            _, ready, consumers = channel.queue_declare(queue=name, passive=True)
            state[name] = (ready, consumers)
        return state

    def broker_check(self) -> tuple[bool, str]:
        """After the consumers are gone: every queue empty, hence nothing unacknowledged either.

        A message a consumer held unacknowledged goes back to ready when its channel closes, so
        with no consumer attached the ready count is the whole content. (``rabbitmqctl
        list_queues`` is no help here: for quorum queues its counts are metrics emitted every few
        seconds, not the queue's state.)
        """
        from kombu import Connection

        with Connection(self.amqp_url, connect_timeout=5) as connection:
            channel = connection.channel()
            deadline = time.monotonic() + 5
            while True:
                state = self.queue_state(channel)
                attached = {name: c for name, (_, c) in state.items() if c}
                if not attached or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        holding = {name: ready for name, (ready, _) in state.items() if ready}
        dead = state.get(DEAD_LETTER, (0, 0))[0]
        problems = []
        if holding:
            problems.append(
                "queues hold messages (" + ", ".join(f"{n} {r}" for n, r in sorted(holding.items())) + ")"
            )
        if attached:
            problems.append(f"consumers still attached ({attached})")
        if not problems:
            return (
                True,
                "every queue empty with no consumer attached (so nothing unacknowledged), 0 dead-lettered",
            )
        return False, "; ".join(problems) + f"; {dead} dead-lettered"

    # the project's workers -----------------------------------------------------------------

    def start_workers(self) -> float:
        """Start ``--workers`` `flexsync sync` processes; returns when the first one is up."""
        base = self._base_env() | {
            "FLEXSYNC_ENV": "development",
            "AMQP_URL": self.amqp_url,
            "DATABASE_URL": self.database_url,
            "FLEXSYNC_SECRET_KEY": self.fernet_key,
            "INTACCT_API_URL": f"{self.intacct_url}/ia/api/v1",
            "INTACCT_CLIENT_SECRET": self.client_secret,
            "FLEXPOINT_API_URL": self.flexpoint_url,
            "FLEXPOINT_API_TOKEN": self.flexpoint_token,
            "INTACCT_MAX_CONCURRENCY_PER_COMPANY": str(CAP_PER_COMPANY),
            "ARCHIVE_MAX_AGE": "1h",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "console",
        }
        self.workers = []
        generation = len(self.processes)
        for number in range(self.args.workers):
            port = free_port()
            name = f"sync-{generation}-{number + 1}"
            process = Process(
                name, [*self._flexsync(), "sync"], base | {"PORT": str(port)}, self.workdir / f"{name}.log"
            )
            self.processes[name] = process
            self.workers.append((process, port))
        # One clean-up for all: every worker gets SIGTERM at once, then each is waited for.
        self.stack.callback(self._stop_all, [process for process, _ in self.workers])
        spawned = time.monotonic()
        progress(
            f"started {len(self.workers)} `flexsync sync` processes: pids {', '.join(str(p.pid) for p, _ in self.workers)}"
        )
        # The metrics endpoint opens right before the consumer starts (processes.sync.run).
        first: float | None = None
        up: set[int] = set()
        deadline = spawned + 60
        while len(up) < len(self.workers):
            for process, port in self.workers:
                if not process.alive():
                    raise BenchError(
                        f"{process.name} exited with status {process.popen.returncode}:\n{process.tail()}"
                    )
                if port in up:
                    continue
                with contextlib.suppress(OSError):
                    if http_get(port, "/metrics", timeout=1)[0] == 200:
                        up.add(port)
                        first = first or time.monotonic()
            if time.monotonic() > deadline:
                raise BenchError("the sync workers did not start within 60 s:\n" + self.workers[0][0].tail())
            time.sleep(0.01)
        assert first is not None
        self.worker_startup = first - spawned
        progress(
            f"first worker up {first - spawned:.2f} s after spawning, all up after {time.monotonic() - spawned:.2f} s"
        )
        return first

    def stop_workers(self) -> None:
        started = time.monotonic()
        self._stop_all([process for process, _ in self.workers], quiet=True)
        progress(f"sync workers stopped (SIGTERM; {time.monotonic() - started:.1f} s)")

    def _stop_all(self, processes: list[Process], quiet: bool = False) -> None:
        alive = [process for process in processes if process.alive()]
        if alive and not quiet:
            progress(f"stopping {', '.join(p.name for p in alive)} (SIGTERM)")
        for process in alive:
            with contextlib.suppress(ProcessLookupError):
                process.popen.send_signal(signal.SIGTERM)
        for process in alive:
            process.stop()

    def worker_metrics(self) -> dict:
        snapshots = []
        for process, port in self.workers:
            try:
                snapshots.append(scrape(port))
            except OSError as exc:
                raise BenchError(
                    f"{process.name}'s /metrics did not answer ({exc}):\n{process.tail()}"
                ) from None
        return merged(snapshots)

    def settled(self, samples: dict) -> tuple[int, int]:
        """(events done or dropped, events failed) so far, over all workers."""
        done = total_of(samples, "flexsync_sync_events_total", outcome="done")
        dropped = total_of(samples, "flexsync_sync_events_total", outcome="dropped")
        failed = total_of(samples, "flexsync_sync_events_total", outcome="failed")
        return int(done + dropped), int(failed)

    def cpu_now(self) -> dict[str, float]:
        return cpu_seconds(
            {
                "sync workers": [p.pid for p, _ in self.workers],
                "intacct-sim": [self.processes["intacct"].pid],
                "flexpoint-sim": [self.processes["flexpoint"].pid],
            }
        )

    # P2: the project's drain ---------------------------------------------------------------

    def project_drain(self, messages: list, targets: list[Target]) -> Drain:
        from kombu import Connection

        self._reset_simulators()
        self.publish_all(messages, "P2 project")
        self.wait_for_depth("sync.ar", len(messages))
        touched = len({(t.company, t.resource, t.key) for t in targets})
        started = self.start_workers()
        cpu_before = self.cpu_now()
        deadline = started + self.args.drain_timeout
        last_report = started
        finished: float | None = None
        with Connection(self.amqp_url, connect_timeout=5) as connection:
            channel = connection.channel()
            while time.monotonic() < deadline:
                for process, _ in self.workers:
                    if not process.alive():
                        raise RunFailed(f"{process.name} died during the drain:\n{process.tail()}")
                samples = self.worker_metrics()
                done, failed = self.settled(samples)
                now = time.monotonic()
                if now - last_report >= 5:
                    last_report = now
                    progress(
                        f"project: {done:,} of {len(messages):,} settled ({failed} failed) after {now - started:.1f} s"
                    )
                if (
                    done >= len(messages)
                    and self.drained(channel)
                    and self._flexpoint_stored_count() >= touched
                ):
                    finished = time.monotonic()
                    break
                time.sleep(0.1)
        if finished is None:
            samples = self.worker_metrics()
            raise_note = (
                f"NOT DRAINED within {self.args.drain_timeout:.0f} s: {self.settled(samples)[0]:,} settled"
            )
            loud(raise_note + "\n" + "\n".join(p.tail() for p, _ in self.workers))
            finished = time.monotonic()
            note = raise_note
        else:
            note = ""
        cpu_after = self.cpu_now()
        samples = self.worker_metrics()
        drain = Drain(
            "project",
            len(messages),
            finished - started,
            startup=self.worker_startup,
            intacct=self._intacct("GET", "/stats"),
            flexpoint=self._flexpoint("GET", "/summary")["requests"],
            cpu=cpu_text(cpu_before, cpu_after, finished - started),
            errors=self.settled(samples)[1],
            note=note,
            extra=self.settled(samples)[0] - len(messages),
        )
        self.project_samples = samples
        self.stop_workers()
        progress(f"project drain: {drain.events:,} events in {drain.seconds:.2f} s = {drain.rate:,.0f} ev/s")
        progress(f"project CPU during the drain: {drain.cpu}")
        self._describe_worker_metrics(samples)
        return drain

    def _describe_worker_metrics(self, samples: dict) -> None:
        groups = total_of(samples, "flexsync_sync_group_events_count")
        events = total_of(samples, "flexsync_sync_group_events_sum")
        calls = {
            dict(labels).get("peer", "?") + " " + dict(labels).get("status", "?"): value
            for (name, labels), value in samples.items()
            if name == "flexsync_outbound_calls_total"
        }
        latency = {}
        for peer in ("intacct", "flexpoint"):
            count = total_of(samples, "flexsync_outbound_call_seconds_count", peer=peer)
            total = total_of(samples, "flexsync_outbound_call_seconds_sum", peer=peer)
            if count:
                latency[peer] = f"{count:.0f} calls, mean {total / count * 1000:.1f} ms"
        failures = {
            f"{dict(labels).get('resource')}/{dict(labels).get('reason')}": value
            for (name, labels), value in samples.items()
            if name == "flexsync_sync_failures_total" and value
        }
        progress(
            f"project metrics: {groups:.0f} groups, {events / groups if groups else 0:.1f} events per group; "
            f"calls by peer/status {calls}; {latency}; failures {failures or 'none'}"
        )

    def _flexpoint_stored_count(self) -> int:
        summary = self._flexpoint("GET", "/summary")
        return sum(
            counts["live"] + counts["deleted"]
            for account in summary["accounts"].values()
            for counts in account["resources"].values()
        )

    def _reset_simulators(self) -> None:
        self._flexpoint("POST", "/reset")
        self._intacct("DELETE", "/stats")

    # P2: the reference consumer ------------------------------------------------------------

    def reference_drain(self, messages: list, *, cap_in_memory: bool = False) -> Drain:
        """The plain consumer: per event one GET (+ its lines), one single-item upsert, then ack.

        Its Intacct client is the project's, made the project's way (``create_client``: the cap
        held in the database by ``store.slots.CompanySlots``), or with ``cap_in_memory`` the same
        client over a per-company semaphore in this process, which is all one process needs.
        """
        from kombu import Connection, Consumer, Queue

        from clients.flexpoint import FlexPointClient
        from clients.intacct import IntacctClient, TokenProvider, build_session
        from clients.intacct.client import create_client
        from store.crypto import SecretBox
        from store.slots import company_slots
        from workers.connections.store import ConnectionStore

        self._reset_simulators()
        settings = self.settings()
        handlers = self.args.reference_handlers
        if cap_in_memory:
            session = build_session(handlers)
            intacct = IntacctClient(
                settings,
                tokens=TokenProvider(settings, session),
                slots=ProcessSlots(CAP_PER_COMPANY),
                session=session,
            )
        else:
            intacct = create_client(settings, company_slots(settings, self.engine), pool_size=handlers)
        label = "reference (cap in memory)" if cap_in_memory else "reference"
        flexpoint = FlexPointClient(self.flexpoint_url, self.flexpoint_token, pool_size=handlers)
        store = ConnectionStore(self.engine, SecretBox([self.fernet_key]))
        connections = {c.connection_id: store.get(c.connection_id) for c in self.connections}
        pool = ThreadPoolExecutor(handlers, thread_name_prefix="reference")
        self.stack.callback(pool.shutdown, wait=False, cancel_futures=True)

        self.publish_all(messages, f"P2 {label}")
        self.wait_for_depth("sync.ar", len(messages))
        finished: queue.SimpleQueue = queue.SimpleQueue()

        def handle(envelope: dict[str, Any]) -> None:
            reference_handle(envelope, connections, intacct, flexpoint)

        def on_message(body: Any, message: Any) -> None:
            future = pool.submit(handle, body)
            future.add_done_callback(lambda f, m=message: finished.put((m, f.exception())))

        acked = errors = 0
        first_error = None
        cpu_before = self.cpu_now()
        with Connection(self.amqp_url, connect_timeout=5, heartbeat=0) as connection:
            connection.ensure_connection(max_retries=2)
            channel = connection.channel()
            channel.basic_qos(0, handlers * 2, False)
            queues = [Queue(q.name, no_declare=True) for q in self.topology.work_queues]
            consumer = Consumer(channel, queues=queues, callbacks=[on_message], accept=["json"])
            started = time.monotonic()
            consumer.consume()
            deadline = started + self.args.drain_timeout
            last_report = started
            while acked < len(messages) and time.monotonic() < deadline:
                with contextlib.suppress(socket.timeout, TimeoutError):
                    connection.drain_events(timeout=0.005)
                while True:
                    try:
                        message, error = finished.get_nowait()
                    except queue.Empty:
                        break
                    if error is None:
                        message.ack()
                        acked += 1
                    else:
                        errors += 1
                        first_error = first_error or error
                        message.requeue()
                if time.monotonic() - last_report >= 5:
                    last_report = time.monotonic()
                    progress(
                        f"{label}: {acked:,} of {len(messages):,} acked after {last_report - started:.1f} s"
                    )
            ended = time.monotonic()
            consumer.cancel()
        pool.shutdown(wait=True)
        intacct.close()
        flexpoint.close()
        note = (
            ""
            if acked >= len(messages)
            else f"NOT DRAINED within {self.args.drain_timeout:.0f} s: {acked:,} acked"
        )
        if first_error is not None:
            loud(
                f"the {label} consumer failed {errors} times; first: {type(first_error).__name__}: {first_error}"
            )
        drain = Drain(
            label,
            len(messages),
            ended - started,
            intacct=self._intacct("GET", "/stats"),
            flexpoint=self._flexpoint("GET", "/summary")["requests"],
            cpu=cpu_text(cpu_before, self.cpu_now(), ended - started),
            errors=errors,
            note=note,
        )
        progress(f"{label} drain: {drain.events:,} events in {drain.seconds:.2f} s = {drain.rate:,.0f} ev/s")
        progress(f"{label} CPU during the drain: {drain.cpu}")
        return drain

    # P3: freshness -------------------------------------------------------------------------

    def freshness(self, targets: list[Target]) -> dict[str, Any]:
        from kombu import Connection

        self._reset_simulators()
        self.start_workers()
        time.sleep(1.0)  # the consumers connect and subscribe
        before = self.worker_metrics()
        settled_before = self.settled(before)[0]
        rate = self.args.freshness_rate
        published: list[float] = []
        futures: list[Future[None]] = []
        progress(f"P3: publishing {len(targets):,} events at {rate:g}/s")
        start = time.monotonic() + 0.05
        for index, target in enumerate(targets):
            delay = start + index / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            moment = time.time()
            routing_key, body, event_id = self.envelope(target, moment)
            futures.append(self.publisher.publish(routing_key, body, message_id=event_id))
            published.append(moment)
        for future in futures:
            future.result(timeout=30)
        achieved = (len(published) - 1) / (published[-1] - published[0]) if len(published) > 1 else 0.0
        progress(f"P3: published and confirmed, achieved {achieved:,.1f} events/s")
        deadline = time.monotonic() + 60
        with Connection(self.amqp_url, connect_timeout=5) as connection:
            channel = connection.channel()
            while time.monotonic() < deadline:
                after = self.worker_metrics()
                if self.settled(after)[0] - settled_before >= len(targets) and self.drained(channel):
                    break
                time.sleep(0.1)
        after = self.worker_metrics()
        settled = self.settled(after)[0] - settled_before
        self.stop_workers()

        updated: dict[tuple[int, str, str], float] = {}
        for (company, resource, key), record in self.flexpoint_records().items():
            updated[(company, resource, key)] = datetime.fromisoformat(record["updatedAt"]).timestamp()
        # A record's updatedAt moves only when its stored state changes, and FlexPoint was reset
        # before the run: it is the moment the record's first write landed. An event whose
        # record was already written when it was published (an invoice a payment event brought
        # along, a repeat) found it fresh: 0, and counted apart.
        latencies = []
        written_after: list[float] = []
        for target, moment in zip(targets, published, strict=True):
            at = updated.get((target.company, target.resource, target.key))
            latency = math.inf if at is None else max(0.0, at - moment)
            latencies.append(latency)
            if at is None or at > moment:
                written_after.append(latency)
        latencies.sort()
        written_after.sort()
        return {
            "events": len(targets),
            "records": len({(t.company, t.resource, t.key) for t in targets}),
            "achieved": achieved,
            "settled": settled,
            "p50": percentile(latencies, 0.50),
            "p99": percentile(latencies, 0.99),
            "max": latencies[-1] if latencies else math.nan,
            "missing": sum(1 for v in latencies if math.isinf(v)),
            "already": len(latencies) - len(written_after),
            "strict_p99": percentile(written_after, 0.99),
            "histogram": lag_histogram(before, after),
        }

    # correctness ---------------------------------------------------------------------------

    def flexpoint_records(self) -> dict[tuple[int, str, str], dict[str, Any]]:
        from clients.flexpoint import FlexPointClient

        records = {}
        with FlexPointClient(self.flexpoint_url, self.flexpoint_token) as client:
            for index, connection in enumerate(self.connections):
                for resource in OBJECTS:
                    for record in client.iter_records(connection.account_id, resource, include_deleted=True):
                        records[(index, resource, record["externalId"])] = record
        return records

    def expected(self, index: int, resource: str, key: str) -> Any:
        """The item Intacct's record maps to now (map_record), or an exception's text."""
        from schemas.mappings import MappingError, line_source, map_record

        if self._intacct_data is None:
            data = []
            for company in self.companies:
                records = {
                    r: {str(x["key"]): x for x in self._records(company, p)} for r, p in OBJECTS.items()
                }
                lines = {}
                for resource_name, path in LINE_OBJECTS.items():
                    source = line_source(resource_name)
                    lines[resource_name] = source.group(self._records(company, path)) if source else {}
                data.append({"records": records, "lines": lines})
            self._intacct_data = data
        cache_key = (index, resource, key)
        if cache_key not in self._mapped:
            company = self._intacct_data[index]
            record = company["records"][resource].get(key)
            if record is None:
                self._mapped[cache_key] = "not in Intacct"
            else:
                try:
                    self._mapped[cache_key] = map_record(
                        resource, record, company["lines"].get(resource, {}).get(key, ())
                    )
                except MappingError as exc:
                    self._mapped[cache_key] = f"unmappable: {exc}"
        return self._mapped[cache_key]

    def verify(self, label: str, targets: Iterable[Target]) -> Verdict:
        """FlexPoint holds every touched record, and every record it holds equals Intacct's."""
        from sandbox.flexpoint.versions import parse_timestamp

        stored = self.flexpoint_records()
        touched = {(t.company, t.resource, t.key) for t in targets}
        missing = sorted(touched - set(stored))
        wrong = []
        for where, record in stored.items():
            item = self.expected(*where)
            if not isinstance(item, dict):
                wrong.append((where, item))
                continue
            same = (
                bool(record["deleted"]) == bool(item.get("deleted", False))
                and parse_timestamp(record["sourceVersion"]).key == parse_timestamp(item["sourceVersion"]).key
                and (record["deleted"] or record["data"] == json.loads(json.dumps(item["data"])))
            )
            if not same:
                wrong.append((where, "differs from Intacct's"))
        broker_ok, broker_text = self.broker_check()
        if not self.broker_still_up():
            broker_ok, broker_text = False, broker_text + " (RABBITMQ WENT AWAY DURING THE RUN)"
        ok = not missing and not wrong and broker_ok
        extra = len(set(stored) - touched)
        text = (
            f"{len(touched):,} touched records all in FlexPoint"
            if not missing
            else f"{len(missing):,} of {len(touched):,} touched records MISSING from FlexPoint"
        )
        text += (
            f"; {len(stored):,} stored ({extra:,} besides the touched, e.g. invoices refreshed by payments), "
        )
        text += "all equal to Intacct's" if not wrong else f"{len(wrong):,} DIFFERENT from Intacct's"
        text += f"; {broker_text}"
        if missing:
            loud(f"{label}: missing from FlexPoint, e.g. {missing[:5]}")
        if wrong:
            sample = wrong[0]
            loud(
                f"{label}: FlexPoint differs from Intacct, e.g. {sample[0]}: {sample[1]}; stored {stored[sample[0]]}"
            )
        if not broker_ok:
            loud(f"{label}: {broker_text}")
        verdict = Verdict(label, ok, text)
        self.verdicts.append(verdict)
        return verdict

    # the whole run ---------------------------------------------------------------------------

    def run(self) -> int:
        args = self.args
        rng = random.Random(args.seed)
        targets, hot = plan_events(self.pools, args.events, args.repeat_share, rng)
        now = time.time()
        messages = [self.envelope(target, now) for target in targets]
        mix = Counter(t.resource for t in targets)
        distinct = len({(t.company, t.resource, t.key) for t in targets})
        reference_count = min(args.reference_events or len(targets), len(targets))
        figure(
            f"P2 setup: {len(self.companies)} companies (each seeded with ~{self.seeded.get('customer', 0)} customers, "
            f"~{self.seeded.get('invoice', 0)} invoices, ~{self.seeded.get('payment', 0)} payments); "
            f"{len(targets):,} events ({', '.join(f'{n:,} {r}' for r, n in mix.most_common())}) on {distinct:,} records, "
            f"{args.repeat_share:.0%} of them repeats on {hot} hot records; latency {self.latency_seen[0]:g} ms per "
            f"Intacct call and {self.latency_seen[1]} ms per FlexPoint call, Intacct cap {self.latency_seen[2]} per "
            f"company; project: {args.workers} `flexsync sync` processes; reference: {args.reference_handlers} "
            f"handlers on the first {reference_count:,} of the same events; RabbitMQ {self.rabbitmq_version} "
            f"(vhost {self.vhost}); {os.cpu_count()} CPUs"
        )

        project = self.project_drain(messages, targets)
        project_verdict = self.verify("P2 project", targets)

        reference_targets = targets[:reference_count]
        reference = self.reference_drain(messages[:reference_count])
        reference_verdict = self.verify("P2 reference", reference_targets)
        in_memory = self.reference_drain(messages[:reference_count], cap_in_memory=True)
        in_memory_verdict = self.verify("P2 reference (cap in memory)", reference_targets)

        self._report_p2(
            project, reference, in_memory, project_verdict, [reference_verdict, in_memory_verdict]
        )

        if args.freshness_seconds > 0 and args.freshness_rate > 0:
            count = max(1, round(args.freshness_rate * args.freshness_seconds))
            fresh_targets, _ = plan_events(
                self.pools, count, args.freshness_repeat_share, random.Random(args.seed + 1)
            )
            result = self.freshness(fresh_targets)
            fresh_verdict = self.verify("P3", fresh_targets)
            self._report_p3(result, fresh_verdict)
        return 0 if all(v.ok for v in self.verdicts) else 1

    # report ----------------------------------------------------------------------------------

    def _report_p2(
        self,
        project: Drain,
        reference: Drain,
        in_memory: Drain,
        project_ok: Verdict,
        references_ok: list[Verdict],
    ) -> None:
        subset = (
            f"the first {reference.events:,} of the {project.events:,} events"
            if reference.events < project.events
            else f"the same {reference.events:,} events"
        )
        groups = total_of(self.project_samples, "flexsync_sync_group_events_count")
        grouped = total_of(self.project_samples, "flexsync_sync_group_events_sum")
        figure(
            f"P2 project drain: {project.events:,} events in {project.seconds:.2f} s = {project.rate:,.0f} events/s "
            f"(from the first worker up to every event settled, i.e. acked, and every queue empty; start-up "
            f"{project.startup:.2f} s more{', ' + project.note if project.note else ''}) [the workers' "
            f"flexsync_sync_group_events: {groups:,.0f} groups, {grouped / groups if groups else 0:.1f} events per group; "
            f"{project.extra:,} events settled more than once]"
        )
        figure(
            f"P2 reference drain: {reference.events:,} events in {reference.seconds:.2f} s = "
            f"{reference.rate:,.0f} events/s ({subset}, rates compared per event; one GET + its lines + one "
            f"single-item upsert per event, {self.args.reference_handlers} handlers, the project's Intacct "
            f"client from create_client, cap held in the database{', ' + reference.note if reference.note else ''}) "
            f"[the same with the cap held in this process's memory: {in_memory.events:,} events in "
            f"{in_memory.seconds:.2f} s = {in_memory.rate:,.0f} events/s{', ' + in_memory.note if in_memory.note else ''}]"
        )
        ratio = project.rate / reference.rate if reference.rate else 0.0
        ratio_memory = project.rate / in_memory.rate if in_memory.rate else 0.0
        figure(
            f"P2 throughput ratio: project/reference = {ratio:.1f}x (target >= {RATIO_TARGET:g}x: "
            f"{met(ratio >= RATIO_TARGET)}) [events per second of each, measured in this run; against the "
            f"reference with the cap in memory: {ratio_memory:.1f}x ({met(ratio_memory >= RATIO_TARGET)})]"
        )
        calls = project.intacct.get("totalCalls", 0)
        by_object: Counter = Counter()
        for per_company in project.intacct.get("calls", {}).values():
            by_object.update(per_company)
        per_event = calls / project.events if project.events else math.inf
        ref_calls = reference.intacct.get("totalCalls", 0)
        figure(
            f"P2 Intacct calls per event (project): {calls:,} calls / {project.events:,} events = {per_event:.4f} "
            f"(target <= {CALLS_PER_EVENT_TARGET:g}: {met(per_event <= CALLS_PER_EVENT_TARGET)}) "
            f"[{', '.join(f'{path} {n:,}' for path, n in by_object.most_common())}; reference "
            f"{ref_calls / reference.events if reference.events else 0:.2f}]"
        )
        too_many = project.intacct.get("tooManyRequests", 0)
        figure(
            f"P2 Intacct 429s during the project's run: {too_many} (target 0: {met(too_many == 0)}) "
            f"[peak in flight per company {max(project.intacct.get('peakInFlight', {}).values() or [0])}; "
            f"references: {reference.intacct.get('tooManyRequests', 0)} and "
            f"{in_memory.intacct.get('tooManyRequests', 0)}]"
        )
        flex_calls = project.flexpoint.get("total", 0)
        ref_flex = reference.flexpoint.get("total", 0)
        figure(
            f"P2 FlexPoint calls per event: project {flex_calls:,} / {project.events:,} = "
            f"{flex_calls / project.events if project.events else 0:.4f} (statuses {project.flexpoint.get('byStatus')}); "
            f"reference {ref_flex:,} / {reference.events:,} = {ref_flex / reference.events if reference.events else 0:.2f}"
        )
        failures = f"; {project.errors} events failed at least once (retried)" if project.errors else ""
        references = "; ".join(
            f"{v.label.removeprefix('P2 ')}: {'OK' if v.ok else 'FAILED (' + v.text + ')'}"
            for v in references_ok
        )
        figure(
            f"P2 correctness: project: {project_ok.text}{failures}: {'OK' if project_ok.ok else 'FAILED'}; "
            f"{references}"
        )

    def _report_p3(self, result: dict[str, Any], verdict: Verdict) -> None:
        p99 = result["p99"]
        histogram = result["histogram"]
        figure(
            f"P3 freshness at {self.args.freshness_rate:g} events/s for {self.args.freshness_seconds:g} s "
            f"({result['events']:,} events on {result['records']:,} records, achieved {result['achieved']:,.1f}/s): "
            f"p50 {seconds_text(result['p50'])}, p99 {seconds_text(p99)}, max {seconds_text(result['max'])} "
            f"(target p99 <= {P99_TARGET_SECONDS:g} s: {met(p99 <= P99_TARGET_SECONDS)}) [from the publish "
            f"(receivedAt, stamped before the broker's confirm) to FlexPoint's own updatedAt of the record; "
            f"{result['already']} events found their record already written (0 s), p99 without them "
            f"{seconds_text(result['strict_p99'])}; {result['missing']} never visible; the workers' own "
            f"flexsync_sync_lag_seconds: {histogram}]"
        )
        settled = f"{result['settled']:,} of {result['events']:,} events settled"
        figure(f"P3 correctness: {settled}; {verdict.text}: {'OK' if verdict.ok else 'FAILED'}")


class _MemoryLease:
    kept = False

    def keep_until_expiry(self) -> None:
        self.kept = True


class ProcessSlots:
    """The per-company cap as a semaphore in this process: what a single plain consumer needs.

    Duck-types ``store.slots.CompanySlots`` for ``IntacctClient``: a slot whose request timed out
    stays taken until its lease runs out, as there.
    """

    lease_seconds = 45.0

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._semaphores: dict[str, threading.BoundedSemaphore] = {}
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def acquire(self, company_id: str, timeout: float = 30.0) -> Iterator[_MemoryLease]:
        from store.slots import SlotTimeout

        with self._guard:
            semaphore = self._semaphores.setdefault(company_id, threading.BoundedSemaphore(self.cap))
        if not semaphore.acquire(timeout=timeout):
            raise SlotTimeout(f"all {self.cap} slots of company {company_id} stayed busy for {timeout:g} s")
        lease = _MemoryLease()
        try:
            yield lease
        finally:
            if lease.kept:
                timer = threading.Timer(self.lease_seconds, semaphore.release)
                timer.daemon = True
                timer.start()
            else:
                semaphore.release()


def reference_handle(
    envelope: dict[str, Any], connections: dict[str, Any], intacct: Any, flexpoint: Any
) -> None:
    """What a plain consumer does with one event: fetch the record and its lines, map, upsert it alone."""
    from schemas.catalog import BY_RESOURCE
    from schemas.mappings import line_source, map_record, tombstone

    connection = connections[envelope["connectionId"]]
    resource = envelope["resource"]
    key = str(envelope["key"])
    record = intacct.get(connection, BY_RESOURCE[resource].rest_path, key)
    if record is None:
        item = tombstone(resource, key, envelope.get("occurredAt") or datetime.now(UTC))
    else:
        lines: list[dict[str, Any]] = []
        source = line_source(resource)
        if source is not None:
            lines = list(
                intacct.query_all(
                    connection,
                    source.rest_path,
                    fields=list(source.fields),
                    filters=[{"$in": {source.parent_field: [key]}}],
                )
            )
        item = map_record(resource, record, lines, entity_id=connection.entity_id)
    flexpoint.upsert(connection.account_id, resource, connection.connection_id, [item])


def lag_histogram(before: dict, after: dict) -> str:
    """The workers' own lag histogram over the run: which bucket holds the p50 and the p99."""
    buckets = []
    for (name, labels), value in after.items():
        if name == "flexsync_sync_lag_seconds_bucket":
            bound = float(dict(labels)["le"])
            buckets.append((bound, value - before.get((name, labels), 0.0)))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    if not total:
        return "no observations"

    def bucket(share: float) -> str:
        previous = 0.0
        for bound, count in buckets:
            if count >= share * total:
                return f"({previous:g}, {bound:g}] s" if not math.isinf(bound) else f"> {previous:g} s"
            previous = bound
        return "?"

    return f"{total:,.0f} observed, p50 in {bucket(0.5)}, p99 in {bucket(0.99)} (settle time at the consumer)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000, help="events in the P2 drain")
    parser.add_argument("--companies", type=int, default=20, help="simulated companies, one connection each")
    parser.add_argument(
        "--repeat-share", type=float, default=0.3, help="share of events repeating a hot record"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=20, help="latency injected per Intacct and FlexPoint call"
    )
    parser.add_argument("--workers", type=int, default=2, help="`flexsync sync` processes")
    parser.add_argument(
        "--reference-events",
        type=int,
        default=3000,
        help="events the reference consumer drains (the first of the same sequence); 0 for all",
    )
    parser.add_argument(
        "--reference-handlers", type=int, default=16, help="the reference consumer's concurrent handlers"
    )
    parser.add_argument("--freshness-rate", type=float, default=200, help="P3 events per second")
    parser.add_argument("--freshness-seconds", type=float, default=20, help="P3 duration; 0 skips P3")
    parser.add_argument(
        "--freshness-repeat-share",
        type=float,
        default=0.0,
        help="share of P3 events repeating a record (0: each event names a record of its own, so each is timed exactly)",
    )
    parser.add_argument("--drain-timeout", type=float, default=300, help="seconds a drain may take at most")
    parser.add_argument("--seed", type=int, default=1, help="seed of the event plan")
    parser.add_argument(
        "--amqp-url",
        default=os.environ.get("AMQP_URL") or DEFAULT_AMQP_URL,
        help="RabbitMQ on this host (AMQP_URL); a vhost is created for the run",
    )
    args = parser.parse_args(argv)
    if args.events < 1 or args.companies < 1 or args.workers < 1 or args.reference_handlers < 1:
        parser.error("--events, --companies, --workers and --reference-handlers must be at least 1")
    if not 0 <= args.repeat_share < 1 or not 0 <= args.freshness_repeat_share < 1:
        parser.error("--repeat-share and --freshness-repeat-share must lie in [0, 1)")
    if args.latency_ms < 0 or args.reference_events < 0:
        parser.error("--latency-ms and --reference-events cannot be negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body(stack: contextlib.ExitStack) -> int:
        bench = Benchmark(args, stack)
        bench.prepare()
        return bench.run()

    return run_guarded("bench/sync.py", body, cleaned="processes stopped, vhost deleted, temp dir removed")


if __name__ == "__main__":
    sys.exit(main())
