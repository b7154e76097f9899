"""Receiver benchmark, QUALITY P1: the receiver against the confirm floor and a bare endpoint.

    .venv/bin/python bench/receiver.py [--duration 10] [--connections 32] [--workers 2] [--threads 8]

The three servers run under gunicorn with ReceiverServer's options (see bench/servers.py) and
are loaded by wrk with the same requests: new Intacct-style deliveries (RS256 bearer JWT from a
JWKS served here, X-Trusted-Context, unique Idempotency-Key, ~600-byte JSON body). The receiver
publishes to a real RabbitMQ, in a vhost created for the run and deleted afterwards, and keeps
its connections and idempotency ledger in a fresh SQLite database. The confirm floor
(bench/floor.py) parses the JSON and publishes it with pipelined confirms to the same exchange of
the same topology, and does nothing else: what any receiver keeping the brief's promise pays.

Peak runs go in rounds (bare, floor, receiver; the floor and the receiver swap places each
round), and receiver/floor is judged within each round, the median of the rounds being the
figure, so the two are compared at one moment of a shared, noisy machine. Then the receiver is
paced at half its own peak (wrk ``delay()``) for its latency. Progress goes to stderr; the
summary, one line per figure, to stdout. Exit status 1 when the receiver answered anything but
2xx or the queue holds fewer messages than the 2xx it gave (those are correctness problems, not
speed); performance targets missed are reported, never an error.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import http.client
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    BenchError,
    figure,
    free_port,
    loud,
    machine_ticks,
    process_stat,
    progress,
    rabbitmqctl,
    run_guarded,
    thread_switches,
)

LUA_SCRIPT = BENCH / "wrk" / "webhook.lua"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
ISSUER = "https://intacct.bench.invalid/webhooks"
KID = "flexsync-bench-1"
COMPANY = "BENCH-CO"
BODY_BYTES = 600
RATIO_TARGET = 0.8
CPU_RATIO_TARGET = 1.3
KINDS = ("bare", "floor", "receiver")
P99_TARGET_MS = 50.0
STOP_TIMEOUT = 30.0


# -- wrk results --------------------------------------------------------------------------


@dataclass
class WrkResult:
    label: str
    requests: int
    seconds: float
    statuses: dict[int, int]
    errors: dict[str, int]
    latency_us: dict[str, int]
    # CPU seconds spent during the run by the server's processes and by RabbitMQ.
    cpu: dict[str, float] = dataclasses.field(default_factory=dict)
    # wrk's connections held by each gunicorn worker, and the starts it took to get that split.
    split: list[int] = dataclasses.field(default_factory=list)
    attempts: int = 1
    # The share of the machine's CPU time the hypervisor gave to other guests during the run.
    steal: float | None = None
    # Thread switches of the server's gunicorn workers during the run (None: not counted).
    switches: int | None = None

    @classmethod
    def load(cls, label: str, path: Path) -> WrkResult:
        data = json.loads(path.read_text())
        return cls(
            label=label,
            requests=data["requests"],
            seconds=data["duration_us"] / 1e6,
            statuses={int(code): count for code, count in data["statuses"].items()},
            errors=data["errors"],
            latency_us=data["latency_us"],
        )

    @property
    def ok(self) -> int:
        return sum(count for code, count in self.statuses.items() if 200 <= code < 300)

    @property
    def not_ok(self) -> int:
        return sum(count for code, count in self.statuses.items() if not 200 <= code < 300)

    @property
    def socket_errors(self) -> int:
        return sum(self.errors[name] for name in ("connect", "read", "write", "timeout"))

    @property
    def ok_rate(self) -> float:
        """2xx answers per second: a fast refusal must not count as throughput."""
        return self.ok / self.seconds if self.seconds else 0.0

    def cpu_per_answer_us(self, name: str) -> float:
        """CPU microseconds ``name``'s processes spent per answer during the run."""
        return self.cpu.get(name, 0.0) / self.requests * 1e6 if self.requests else 0.0

    def switches_per_answer(self) -> float | None:
        return self.switches / self.requests if self.switches is not None and self.requests else None

    def ms(self, name: str) -> float:
        return self.latency_us[name] / 1000.0

    def describe(self) -> str:
        codes = ", ".join(f"{code}: {count}" for code, count in sorted(self.statuses.items())) or "none"
        text = (
            f"{self.label}: {self.ok_rate:,.0f} 2xx/s ({self.requests:,} answers in {self.seconds:.1f} s), "
            f"p50 {self.ms('p50'):.1f} ms, p99 {self.ms('p99'):.1f} ms, max {self.ms('max'):.1f} ms; "
            f"statuses {codes}"
        )
        if self.socket_errors:
            text += f"; socket errors {self.errors}"
        if self.split:
            text += f"; connections per worker {'/'.join(map(str, self.split))}"
            if self.attempts > 1:
                text += f" (start {self.attempts})"
        if self.steal is not None:
            text += f"; steal {self.steal:.1%}"
        if self.cpu and self.requests:
            text += "; CPU per answer: " + ", ".join(
                f"{name} {seconds / self.requests * 1e6:,.0f} us" for name, seconds in self.cpu.items()
            )
        switches = self.switches_per_answer()
        if switches is not None:
            text += f"; thread switches per answer {switches:.1f}"
        return text


# -- the run ------------------------------------------------------------------------------


class Benchmark:
    def __init__(self, args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
        self.args = args
        self.stack = stack
        self.wrk = shutil.which("wrk") or ""
        self.workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="flexsync-bench-")))
        self.run_tag = uuid.uuid4().hex[:8]
        self.servers: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}
        self.logs: dict[str, Path] = {}
        self.results: dict[str, list[WrkResult]] = {kind: [] for kind in KINDS}
        self.rabbitmq_version = "?"
        self._runs = 0

    # set-up ------------------------------------------------------------------------------

    def prepare(self) -> None:
        self.amqp_url = self._create_vhost()
        self._declare_topology()
        self.fernet_key = self._prepare_database()
        self.jwks_url, self.token = self._start_jwks()
        self.context = base64.b64encode(
            json.dumps({"clientId": self._client_id(), "companyId": COMPANY}).encode()
        ).decode()
        self.body_prefix, self.body_suffix = webhook_body_template()

    def _client_id(self) -> str:
        from config import Settings

        return Settings().intacct_client_id

    def _create_vhost(self) -> str:
        base = self.args.amqp_url
        parts = urlsplit(base)
        if parts.hostname not in ("localhost", "127.0.0.1", "::1") or not shutil.which("rabbitmqctl"):
            raise BenchError(
                f"the benchmark creates its own vhost with rabbitmqctl, so RabbitMQ must run on this host "
                f"(AMQP_URL host is {parts.hostname!r}; rabbitmqctl {'found' if shutil.which('rabbitmqctl') else 'not found'})"
            )
        self.vhost = f"flexsync-bench-{self.run_tag}"
        user = parts.username or "guest"
        progress(f"creating RabbitMQ vhost {self.vhost}")
        rabbitmqctl("add_vhost", self.vhost)
        self.stack.callback(self._delete_vhost)
        rabbitmqctl("set_permissions", "-p", self.vhost, user, ".*", ".*", ".*")
        return urlunsplit((parts.scheme, parts.netloc, "/" + quote(self.vhost, safe=""), "", ""))

    def _delete_vhost(self) -> None:
        progress(f"deleting RabbitMQ vhost {self.vhost}")
        try:
            rabbitmqctl("delete_vhost", self.vhost)
        except Exception as exc:
            print(
                f"warning: could not delete vhost {self.vhost}: {exc}; "
                f"remove it with `rabbitmqctl delete_vhost {self.vhost}`",
                file=sys.stderr,
            )

    def _declare_topology(self) -> None:
        from kombu import Connection

        from broker.topology import build_topology, declare_topology

        with Connection(self.amqp_url, connect_timeout=5) as connection:
            connection.ensure_connection(max_retries=2)
            declare_topology(connection, build_topology("7D"))
            properties = getattr(connection.connection, "server_properties", {}) or {}
            version = properties.get("version", "?")
            self.rabbitmq_version = version.decode() if isinstance(version, bytes) else str(version)

    def _prepare_database(self) -> str:
        from cryptography.fernet import Fernet

        from store.crypto import SecretBox
        from store.db import create_engine_for, upgrade
        from workers.connections.store import ConnectionStore

        key = Fernet.generate_key().decode()
        self.database_url = f"sqlite:///{self.workdir}/flexsync.db"
        engine = create_engine_for(self.database_url)
        try:
            upgrade(engine)
            self.connection_id = str(uuid.uuid4())
            ConnectionStore(engine, SecretBox([key])).save(
                connection_id=self.connection_id,
                account_id="bench-account",
                company_id=COMPANY,
                entity_id=None,
                user_id="ws_bench",
                state="connected",
            )
        finally:
            engine.dispose()
        return key

    def _start_jwks(self, private_key: Any = None) -> tuple[str, str]:
        import jwt
        from cryptography.hazmat.primitives.asymmetric import rsa
        from werkzeug.serving import make_server
        from werkzeug.wrappers import Request, Response

        private_key = private_key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key()))
        document = json.dumps({"keys": [{**public_jwk, "kid": KID, "use": "sig", "alg": "RS256"}]})

        def app(environ, start_response):
            if Request(environ).path != "/.well-known/jwks.json":
                return Response("not found", status=404)(environ, start_response)
            return Response(document, content_type="application/json")(environ, start_response)

        # The workers fetch it once each; their request lines would only clutter the output.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, name="jwks", daemon=True)
        thread.start()
        self.stack.callback(server.shutdown)
        now = int(time.time())
        # One token for the whole run, as the brief allows; a day of validity covers it.
        token = jwt.encode(
            {"iss": ISSUER, "iat": now, "exp": now + 86_400, "sub": "intacct-bench"},
            private_key,
            algorithm="RS256",
            headers={"kid": KID},
        )
        return f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json", token

    def settings_for(self, port: int):
        from config import Settings

        return Settings(
            flexsync_env="test",
            amqp_url=self.amqp_url,
            database_url=self.database_url,
            flexsync_secret_key=(self.fernet_key,),
            intacct_webhook_jwks_url=self.jwks_url,
            intacct_webhook_issuer=ISSUER,
            port=port,
            # The default level, as deployed: what the receiver logs per request is part of its cost.
            log_level="INFO",
        )

    # servers -----------------------------------------------------------------------------

    def start_servers(self) -> None:
        for kind in KINDS:
            port = free_port()
            settings = self.settings_for(port)
            log_path = self.workdir / f"{kind}.log"
            env = {
                **os.environ,
                "BENCH_SETTINGS": json.dumps(dataclasses.asdict(settings)),
                "BENCH_WORKERS": str(self.args.workers),
                "BENCH_THREADS": str(self.args.threads),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            }
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
            with open(log_path, "wb") as log:
                # Own session: a Ctrl-C reaches only this script, which then stops the servers
                # in order (SIGTERM, wait) instead of racing them.
                process = subprocess.Popen(
                    [sys.executable, str(BENCH / "servers.py"), kind],
                    cwd=ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.servers[kind], self.ports[kind], self.logs[kind] = process, port, log_path
            self.stack.callback(self._stop_server, kind)
            progress(f"started {kind} server pid {process.pid} on port {port}")
        for kind in KINDS:
            self._wait_healthy(kind, "/healthz")
        # Readiness too: the publisher holds a confirming channel and the database answers.
        self._wait_healthy("receiver", "/readyz")

    def _wait_healthy(self, kind: str, path: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.servers[kind].poll() is not None:
                raise BenchError(
                    f"the {kind} server exited with status {self.servers[kind].returncode}:\n"
                    + self.log_tail(kind)
                )
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.ports[kind], timeout=2)
                connection.request("GET", path)
                status = connection.getresponse().status
                connection.close()
                if 200 <= status < 300:
                    progress(f"{kind} answers {status} on {path}")
                    return
                last = f"HTTP {status}"
            except OSError as exc:
                last = type(exc).__name__
            time.sleep(0.1)
        raise BenchError(
            f"the {kind} server did not answer 2xx on {path} within {timeout:.0f} s "
            f"(last: {last}):\n" + self.log_tail(kind)
        )

    def _stop_server(self, kind: str) -> None:
        process = self.servers.get(kind)
        if process is None or process.poll() is not None:
            return
        progress(f"stopping {kind} server (SIGTERM to pid {process.pid})")
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(
                f"warning: the {kind} server did not stop within {STOP_TIMEOUT:.0f} s; killing its "
                f"process group {process.pid}",
                file=sys.stderr,
            )
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)

    def log_tail(self, kind: str, lines: int = 30) -> str:
        try:
            text = self.logs[kind].read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(f"    {kind}| {line}" for line in text[-lines:]) or "    (log is empty)"

    # load --------------------------------------------------------------------------------

    def wrk_run(self, kind: str, duration: float, *, delay_ms: float = 0.0, label: str) -> WrkResult:
        self._runs += 1
        out = self.workdir / f"wrk-{self._runs}.json"
        connections = self.args.connections
        threads = max(1, min(self.args.wrk_threads, connections))
        env = {
            **os.environ,
            "BENCH_TOKEN": self.token,
            "BENCH_CONTEXT": self.context,
            "BENCH_BODY_PREFIX": self.body_prefix,
            "BENCH_BODY_SUFFIX": self.body_suffix,
            "BENCH_DELAY_MS": f"{delay_ms:.3f}",
            "BENCH_OUT": str(out),
        }
        url = f"http://127.0.0.1:{self.ports[kind]}/webhooks/intacct/{self.connection_id}"
        command = [
            self.wrk,
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{max(1, round(duration))}s",
            "--timeout",
            "5s",
            "-s",
            str(LUA_SCRIPT),
            url,
        ]
        split: list[int] = []
        for attempt in range(1, self.args.balance_attempts + 1):
            out.unlink(missing_ok=True)
            # New keys for every start: a restarted wrk must not resend a killed one's deliveries.
            env["BENCH_TAG"] = f"bench-{self.run_tag}-{self._runs}-{attempt}"
            before = self._cpu_seconds(kind)
            switches_before = self._switches(kind)
            machine_before = _machine_ticks()
            wrk = subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            split = self._connection_split(kind, connections)
            if max(split) - min(split) <= self.args.balance_slack or attempt == self.args.balance_attempts:
                break
            # The workers hold unequal shares of wrk's connections: the busier one pays more per
            # request (its threads contend for one GIL), so the run would measure the split, not
            # the server. Start again with new connections.
            wrk.kill()
            wrk.communicate()
        profilers = self._start_profilers(kind, duration, label)
        try:
            stdout, stderr = wrk.communicate(timeout=duration + 60)
        except subprocess.TimeoutExpired:
            wrk.kill()
            stdout, stderr = wrk.communicate()
        after = self._cpu_seconds(kind)
        switches_after = self._switches(kind)
        machine_after = _machine_ticks()
        self._finish_profilers(profilers, label)
        if wrk.returncode != 0 or not out.exists():
            raise BenchError(f"wrk failed (exit {wrk.returncode}):\n{stdout}{stderr}")
        result = WrkResult.load(label, out)
        result.cpu = {name: after[name] - before.get(name, 0.0) for name in after}
        # Only workers there at both ends count (a worker restarted meanwhile is left out).
        counted = switches_before.keys() & switches_after.keys()
        result.switches = (
            sum(switches_after[pid] - switches_before[pid] for pid in counted) if counted else None
        )
        result.split = split
        result.attempts = attempt
        if machine_before is not None and machine_after is not None:
            total = machine_after[1] - machine_before[1]
            result.steal = (machine_after[0] - machine_before[0]) / total if total > 0 else None
        self.results[kind].append(result)
        progress(result.describe())
        if kind == "receiver" and (result.not_ok or result.socket_errors):
            loud(
                f"the receiver answered {result.not_ok} non-2xx ({result.statuses}) and had "
                f"{result.socket_errors} socket errors in '{label}'"
            )
        return result

    def _workers(self, kind: str) -> list[str]:
        """The pids of the gunicorn workers of ``kind`` (the children of its master)."""
        master = str(self.servers[kind].pid)
        pids = []
        for entry in Path("/proc").iterdir():
            try:
                if (
                    entry.name.isdigit()
                    and (entry / "stat").read_text().rsplit(")", 1)[1].split()[1] == master
                ):
                    pids.append(entry.name)
            except (OSError, IndexError):
                continue
        return sorted(pids)

    def _connection_split(self, kind: str, connections: int, timeout: float = 5.0) -> list[int]:
        """How many of wrk's connections each worker of ``kind`` holds, once all are open.

        Read from /proc: the established sockets on the server's port, matched by inode to the
        workers' file descriptors. Gives what it saw at ``timeout`` if not all are open by then.
        """
        port = self.ports[kind]
        workers = self._workers(kind)
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

    def _start_profilers(self, kind: str, duration: float, label: str) -> list[tuple[subprocess.Popen, Path]]:
        """With --profile, py-spy samples each gunicorn worker of ``kind`` during a peak run."""
        if kind not in self.args.profile or "peak, round" not in label:
            return []
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        profilers = []
        for pid in self._workers(kind):
            path = self.workdir / f"profile-{self._runs}-{pid}.txt"
            command = [py_spy, "record", "--pid", pid, "--duration", str(max(1, round(duration)))]
            command += ["--rate", "200", "--format", "raw", "--output", str(path), "--nonblocking", "--gil"]
            profilers.append(
                (subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), path)
            )
        return profilers

    def _finish_profilers(self, profilers: list[tuple[subprocess.Popen, Path]], label: str) -> None:
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
            if self.args.profile_dir:
                self.args.profile_dir.mkdir(parents=True, exist_ok=True)
                shutil.copy(
                    path, self.args.profile_dir / f"{label.replace(' ', '-').replace(',', '')}-{path.name}"
                )
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

        progress(
            f"profile of '{label}' ({total} busy samples); top by own time:\n{top(own, self.args.profile_top)}"
        )
        progress(f"profile of '{label}'; top by inclusive time:\n{top(inclusive, self.args.profile_top * 2)}")
        progress(f"profile of '{label}'; by what the thread runs:\n{top(by_thread, 8)}")

    def _switches(self, kind: str) -> dict[str, int]:
        """Thread switches so far of each gunicorn worker of ``kind``, by pid."""
        return {pid: thread_switches(pid) for pid in self._workers(kind)}

    def _cpu_seconds(self, kind: str) -> dict[str, float]:
        """CPU time so far of the server's process group and of the broker (Linux /proc)."""
        tick = os.sysconf("SC_CLK_TCK")
        group = os.getpgid(self.servers[kind].pid)
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

    def run(self) -> int:
        args = self.args
        progress(f"warm-up: {args.warmup:g} s each")
        for kind in KINDS:
            self.wrk_run(kind, args.warmup, label=f"{kind} warm-up")
        peaks: dict[str, list[WrkResult]] = {kind: [] for kind in KINDS}
        for round_number in range(1, args.rounds + 1):
            # The floor and the receiver swap places every round, so a machine that slows
            # down (or speeds up) over the run favours neither of them.
            order = KINDS if round_number % 2 else ("bare", "receiver", "floor")
            for kind in order:
                time.sleep(args.pause)
                peaks[kind].append(
                    self.wrk_run(kind, args.duration, label=f"{kind} peak, round {round_number}")
                )
        best = {kind: max(results, key=lambda r: r.ok_rate) for kind, results in peaks.items()}

        half = best["receiver"].ok_rate / 2
        paced = None
        if half > 0:
            delay_ms = args.connections / half * 1000.0
            time.sleep(args.pause)
            progress(
                f"pacing the receiver at {half:,.0f} req/s: each of {args.connections} connections "
                f"waits {delay_ms:.1f} ms on average between requests"
            )
            paced = self.wrk_run("receiver", args.duration, delay_ms=delay_ms, label="receiver at half peak")

        # CPU per answer is also compared at one common paced rate, floor and receiver in
        # adjacent runs: at peak the two run at different rates, and this machine's noise moves
        # each peak figure by more than the difference being measured.
        pairs: list[tuple[WrkResult, WrkResult]] = []
        if half > 0:
            for pair in range(1, args.paced_pairs + 1):
                runs = []
                for kind in ("floor", "receiver"):
                    time.sleep(args.pause)
                    runs.append(
                        self.wrk_run(
                            kind, args.duration, delay_ms=delay_ms, label=f"{kind} paced, pair {pair}"
                        )
                    )
                pairs.append((runs[0], runs[1]))

        in_queue = {name: self._queue_depth(name) for name in ("sync.ar", "sync.gl")}
        return self._report(peaks, best, half, paced, pairs, in_queue)

    def _queue_depth(self, queue: str) -> int:
        from kombu import Connection

        with Connection(self.amqp_url, connect_timeout=5) as connection:
            channel = connection.channel()
            _, count, _ = channel.queue_declare(queue=queue, passive=True)
            channel.close()
        return count

    # report ------------------------------------------------------------------------------

    def _report(
        self,
        peaks: dict[str, list[WrkResult]],
        best: dict[str, WrkResult],
        half: float,
        paced: WrkResult | None,
        pairs: list[tuple[WrkResult, WrkResult]],
        in_queue: dict[str, int],
    ) -> int:
        args = self.args
        receiver, floor, bare = best["receiver"], best["floor"], best["bare"]
        figure(
            f"P1 setup: gunicorn gthread, {args.workers} workers x {args.threads} threads, keepalive 5 "
            f"(ReceiverServer options for all three); wrk {min(args.wrk_threads, args.connections)} threads x "
            f"{args.connections} connections, {BODY_BYTES}-byte JSON body, RS256 JWT + X-Trusted-Context, "
            f"unique Idempotency-Key; wrk started again until no worker holds more than "
            f"{args.balance_slack} connections above another; {args.rounds} rounds (floor and receiver swap places each round) x {args.duration:g} s; "
            f"RabbitMQ {self.rabbitmq_version} (vhost {self.vhost}); {os.cpu_count()} CPUs"
        )

        best_ratio = receiver.ok_rate / floor.ok_rate if floor.ok_rate else 0.0
        # Judged on each round's own pair of adjacent runs, the median of them: a best run of
        # each, taken from different rounds, compares two moments of a noisy machine.
        paired = [
            (
                r.ok_rate / f.ok_rate if f.ok_rate else 0.0,
                r.cpu_per_answer_us("receiver") / f.cpu_per_answer_us("floor")
                if f.cpu_per_answer_us("floor")
                else float("inf"),
            )
            for f, r in zip(peaks["floor"], peaks["receiver"], strict=True)
        ]
        ratio = statistics.median(rate for rate, _cpu in paired)
        to_bare = receiver.ok_rate / bare.ok_rate if bare.ok_rate else 0.0
        rounds = "; ".join(
            f"{kind} " + ", ".join(f"{r.ok_rate:,.0f}" for r in results) for kind, results in peaks.items()
        )
        figure(
            f"P1 peak throughput: receiver {receiver.ok_rate:,.0f} req/s, floor {floor.ok_rate:,.0f} req/s, "
            f"bare {bare.ok_rate:,.0f} req/s (best of rounds); receiver/floor, median of "
            f"{len(paired)} rounds' adjacent runs, {ratio:.2f} "
            f"(target >= {RATIO_TARGET}: {'MET' if ratio >= RATIO_TARGET else 'NOT MET'}), "
            f"per round {', '.join(f'{rate:.2f}' for rate, _cpu in paired)}, of the best runs {best_ratio:.2f}; "
            f"receiver/bare {to_bare:.2f} (not judged) [2xx/s, each round: {rounds}]"
        )

        cpu = {kind: best[kind].cpu_per_answer_us(kind) for kind in KINDS}
        best_cpu_ratio = cpu["receiver"] / cpu["floor"] if cpu["floor"] else float("inf")
        cpu_ratio = statistics.median(c for _rate, c in paired)
        broker = ", ".join(f"{kind} {best[kind].cpu_per_answer_us('rabbitmq'):,.0f} us" for kind in KINDS)
        per_answer = {kind: best[kind].switches_per_answer() for kind in KINDS}
        switched = (
            " [thread switches per answer: "
            + ", ".join(f"{kind} {value:.1f}" for kind, value in per_answer.items() if value is not None)
            + "]"
            if any(value is not None for value in per_answer.values())
            else ""
        )
        figure(
            f"P1 CPU per answer (gunicorn workers, best peak run): receiver {cpu['receiver']:,.0f} us, "
            f"floor {cpu['floor']:,.0f} us, bare {cpu['bare']:,.0f} us; receiver/floor, median of the rounds' "
            f"adjacent runs, {cpu_ratio:.2f} "
            f"(target <= {CPU_RATIO_TARGET}: {'MET' if cpu_ratio <= CPU_RATIO_TARGET else 'NOT MET'}), "
            f"per round {', '.join(f'{c:.2f}' for _rate, c in paired)}, of the best runs {best_cpu_ratio:.2f} "
            f"[RabbitMQ's per answer: {broker}]{switched}"
        )

        if pairs:
            ratios = sorted(r.cpu_per_answer_us("receiver") / f.cpu_per_answer_us("floor") for f, r in pairs)
            median = statistics.median(ratios)
            listed = "; ".join(
                f"floor {f.cpu_per_answer_us('floor'):,.0f} us / receiver {r.cpu_per_answer_us('receiver'):,.0f} us"
                for f, r in pairs
            )
            figure(
                f"P1 CPU per answer at a common paced rate ({half:,.0f} req/s offered to each, "
                f"{len(pairs)} adjacent pairs): receiver/floor median {median:.2f} "
                f"(target <= {CPU_RATIO_TARGET}: {'MET' if median <= CPU_RATIO_TARGET else 'NOT MET'}), "
                f"range {ratios[0]:.2f}-{ratios[-1]:.2f} [{listed}]"
            )

        if paced is not None:
            p99 = paced.ms("p99")
            figure(
                f"P1 receiver latency at half peak: offered {half:,.0f} req/s, achieved {paced.ok_rate:,.0f} req/s: "
                f"p50 {paced.ms('p50'):.1f} ms, p99 {p99:.1f} ms "
                f"(target p99 <= {P99_TARGET_MS:g} ms: {'MET' if p99 <= P99_TARGET_MS else 'NOT MET'})"
            )
        else:
            figure("P1 receiver latency at half peak: NOT MEASURED (the receiver gave no 2xx at peak)")

        figure(
            "P1 latency at peak: "
            + "; ".join(
                f"{kind} p50 {best[kind].ms('p50'):.1f} ms, p99 {best[kind].ms('p99'):.1f} ms"
                for kind in KINDS
            )
        )

        stolen = [r.steal for results in peaks.values() for r in results if r.steal is not None]
        if stolen:
            figure(
                f"P1 machine: the hypervisor took {min(stolen):.1%}-{max(stolen):.1%} of this machine's CPU "
                f"time for other guests during the peak runs (each run's share is in its progress line)"
            )

        problems = 0
        ok = {kind: sum(r.ok for r in self.results[kind]) for kind in KINDS}
        bad = {kind: sum(r.not_ok for r in self.results[kind]) for kind in KINDS}
        receiver_socket = sum(r.socket_errors for r in self.results["receiver"])
        receiver_codes: dict[int, int] = {}
        for result in self.results["receiver"]:
            for code, count in result.statuses.items():
                receiver_codes[code] = receiver_codes.get(code, 0) + count
        duplicates = receiver_codes.get(200, 0)
        others = ", ".join(
            f"{kind} {bad[kind] + sum(r.socket_errors for r in self.results[kind]):,} of {ok[kind] + bad[kind]:,}"
            for kind in ("floor", "bare")
        )
        verdict = "OK" if bad["receiver"] == 0 and receiver_socket == 0 and duplicates == 0 else "FAILED"
        figure(
            f"P1 non-2xx answers: receiver {bad['receiver']:,} of {ok['receiver'] + bad['receiver']:,} "
            f"(statuses {dict(sorted(receiver_codes.items()))}, socket errors {receiver_socket}, "
            f"200-duplicates {duplicates}), {others}, all runs: {verdict}"
        )
        if verdict != "OK":
            problems += 1
            loud(
                "THE RECEIVER ANSWERED NON-2xx (or duplicates / socket errors) under load; see above. "
                "Its log tail:\n" + self.log_tail("receiver")
            )

        checks = []
        for kind, queue in (("receiver", "sync.ar"), ("floor", "sync.gl")):
            enough = in_queue[queue] >= ok[kind]
            checks.append(
                f"{queue} holds {in_queue[queue]:,} messages, {kind} answered {ok[kind]:,} 2xx: "
                + ("OK" if enough else "FAILED, a 2xx without its message")
            )
            if not enough:
                problems += 1
                loud(f"{queue} holds {in_queue[queue]} messages but the {kind} answered {ok[kind]} 2xx")
        figure("P1 broker check (all runs incl. warm-up): " + "; ".join(checks))
        return 1 if problems else 0


# -- helpers ------------------------------------------------------------------------------


def _machine_ticks() -> tuple[int, int] | None:
    """(steal, all) CPU ticks of the whole machine so far; None where there is no /proc/stat."""
    ticks = machine_ticks()
    return None if ticks is None else (ticks[7], sum(ticks))


def webhook_body_template() -> tuple[str, str]:
    """A Platform Trigger body of ~600 bytes around its record key, split at the key."""
    marker = "\x00KEY\x00"
    body = {
        "object": "ARINVOICE",
        "action": "set",
        "key": marker,
        "id": "INV-BENCH",
        "companyId": COMPANY,
        "occurredAt": "2026-11-24T10:00:00Z",
        "docNumber": "INV-2026-004211",
        "customerId": "C-10042",
        "customerName": "Northwind Traders Ltd",
        "state": "Posted",
        "currency": "USD",
        "totalAmount": "12450.00",
        "totalDue": "12450.00",
        "termName": "Net 30",
        "whenCreated": "2026-11-24T09:58:12Z",
        "dueDate": "2026-12-24",
        "locationId": "100",
        "departmentId": "SALES",
        "modifiedBy": "jsmith",
        "description": "",
        "memo": "",
    }
    # Size the padding for a typical key ("<thread>-<counter>", ~7 characters).
    size = len(json.dumps(body).replace(json.dumps(marker)[1:-1], "1-12345").encode())
    body["description"] = "Monthly service invoice " + "x" * max(0, BODY_BYTES - size - 24)
    text = json.dumps(body)
    prefix, suffix = text.split(json.dumps(marker)[1:-1])
    return prefix, suffix


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10, help="seconds per measured wrk run")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (both servers)")
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads per worker (both servers)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="peak rounds (bare, floor, receiver; floor and receiver swap each round)",
    )
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up load per server")
    parser.add_argument("--pause", type=float, default=1, help="seconds of quiet before each run")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "--balance-slack",
        type=int,
        default=2,
        help="most connections one worker may hold above another; wrk starts again when exceeded",
    )
    parser.add_argument(
        "--balance-attempts",
        type=int,
        default=30,
        help="starts of wrk per run to get a balanced split (the last is kept whatever its split)",
    )
    parser.add_argument(
        "--paced-pairs",
        type=int,
        default=3,
        help="adjacent floor/receiver runs at half the receiver's peak, for CPU per answer (0: none)",
    )
    parser.add_argument(
        "--profile",
        nargs="*",
        default=[],
        choices=KINDS,
        help="sample these servers' workers with py-spy during peak runs (figures are then disturbed)",
    )
    parser.add_argument("--profile-top", type=int, default=20, help="rows of each profile table")
    parser.add_argument(
        "--profile-dir",
        type=Path,
        default=None,
        help="also keep py-spy's raw profiles here (one file per worker and run, for flame graphs)",
    )
    parser.add_argument(
        "--amqp-url",
        default=os.environ.get("AMQP_URL") or DEFAULT_AMQP_URL,
        help="RabbitMQ on this host (AMQP_URL); a vhost is created for the run",
    )
    args = parser.parse_args(argv)
    if args.connections < 1 or args.workers < 1 or args.threads < 1 or args.rounds < 1 or args.duration < 1:
        parser.error("--connections, --workers, --threads, --rounds and --duration must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not shutil.which("wrk"):
        print(
            "bench/receiver.py needs wrk, which is not installed: run `apt-get install -y wrk` "
            "(Debian/Ubuntu; `brew install wrk` on macOS) and try again.",
            file=sys.stderr,
        )
        return 2

    def body(stack: contextlib.ExitStack) -> int:
        bench = Benchmark(args, stack)
        bench.prepare()
        bench.start_servers()
        return bench.run()

    return run_guarded("bench/receiver.py", body, cleaned="servers stopped, vhost deleted")


if __name__ == "__main__":
    sys.exit(main())
