"""What bench/sync.py (and bench/outage.py) run on: a RabbitMQ vhost of the run's own with the
project's topology, both simulators in processes of their own with the latency injected, the
seeded companies, an SQLite store with one connection each, and a confirming publisher. Every
part is cleaned up by the run's exit stack.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import math
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    BenchError,
    Process,
    create_vhost,
    declare_run_topology,
    free_port,
    http_get,
    loud,
    progress,
)
from bench.sync_events import MIX, OBJECTS, Target, envelope, split
from bench.sync_metrics import cpu_seconds

USER_ID = "ws_flexpoint"
CAP_PER_COMPANY = 2  # Intacct's default tier, the simulator's default, INTACCT_MAX_CONCURRENCY_PER_COMPANY


class SyncStage:
    """The set-up every run of bench/sync.py stands on, and the helpers its parts share."""

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

    # set-up ------------------------------------------------------------------------------

    def prepare(self) -> None:
        import requests

        self._configure_logging()
        self.http = requests.Session()
        self.stack.callback(self.http.close)
        self.vhost, self.amqp_url = create_vhost(
            self.stack, self.args.amqp_url, self.run_tag, delete_attempts=10
        )
        self._declare_topology()
        self._watch_broker()
        self._start_simulators()
        self._seed()
        self._prepare_database()
        self._start_publisher()

    def make_topology(self) -> Any:
        """The topology the run declares: the deployed one, archiving for an hour."""
        from broker.topology import build_topology

        return build_topology("1h")

    def _declare_topology(self) -> None:
        self.topology = self.make_topology()
        self.rabbitmq_version = declare_run_topology(self.amqp_url, self.topology)
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
        answer = self.intacct_sandbox("PATCH", "/faults", json={"latencyMs": latency})
        limits = self.intacct_sandbox("GET", "/limits")
        flex = self.flexpoint_sandbox("PUT", "/faults", json={"latencyMs": int(latency)})
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

    def intacct_sandbox(self, method: str, path: str, **kwargs: Any) -> Any:
        """A call of the Intacct simulator's admin API (``/sandbox<path>``): its JSON answer."""
        response = self.http.request(method, f"{self.intacct_url}/sandbox{path}", timeout=120, **kwargs)
        if response.status_code >= 400:
            raise BenchError(
                f"Intacct simulator {method} {path}: HTTP {response.status_code} {response.text[:300]}"
            )
        return None if response.status_code == 204 else response.json()

    def flexpoint_sandbox(self, method: str, path: str, **kwargs: Any) -> Any:
        """A call of the FlexPoint simulator's admin API (``/sandbox<path>``): its JSON answer."""
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
            answer = self.intacct_sandbox(
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
        answer = self.intacct_sandbox(
            "GET", f"/companies/{company}/objects/{path}", params={"size": 1_000_000}
        )
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
        """The event's message as the receiver would publish it (bench.sync_events.envelope)."""
        return envelope(self.connections[target.company], target, moment)

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

    # the run's processes and FlexPoint's state ---------------------------------------------

    def cpu_now(self) -> dict[str, float]:
        return cpu_seconds(
            {
                "sync workers": [p.pid for p, _ in self.workers],
                "intacct-sim": [self.processes["intacct"].pid],
                "flexpoint-sim": [self.processes["flexpoint"].pid],
            }
        )

    def flexpoint_records(self) -> dict[tuple[int, str, str], dict[str, Any]]:
        from clients.flexpoint import FlexPointClient

        records = {}
        with FlexPointClient(self.flexpoint_url, self.flexpoint_token) as client:
            for index, connection in enumerate(self.connections):
                for resource in OBJECTS:
                    for record in client.iter_records(connection.account_id, resource, include_deleted=True):
                        records[(index, resource, record["externalId"])] = record
        return records

    def flexpoint_stored_count(self) -> int:
        summary = self.flexpoint_sandbox("GET", "/summary")
        return sum(
            counts["live"] + counts["deleted"]
            for account in summary["accounts"].values()
            for counts in account["resources"].values()
        )

    def reset_simulators(self) -> None:
        self.flexpoint_sandbox("POST", "/reset")
        self.intacct_sandbox("DELETE", "/stats")
