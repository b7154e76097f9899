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

The parts: bench/servers.py and bench/floor.py (the servers), bench/wrk/webhook.lua and
bench/receiver_wrk.py (the load and wrk's results), bench/receiver_proc.py (what /proc says of
the servers' workers), bench/receiver_profile.py (--profile) and bench/receiver_report.py (the
summary lines).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    DEFAULT_AMQP_URL,
    BenchError,
    Process,
    create_vhost,
    declare_run_topology,
    free_port,
    http_get,
    loud,
    progress,
    run_guarded,
)
from bench.receiver_proc import (  # noqa: E402
    connection_split,
    gunicorn_workers,
    server_cpu_seconds,
    steal_ticks,
    worker_switches,
)
from bench.receiver_profile import finish_profilers, start_profilers  # noqa: E402
from bench.receiver_report import report  # noqa: E402
from bench.receiver_wrk import COMPANY, KINDS, WrkResult, webhook_body_template  # noqa: E402

LUA_SCRIPT = BENCH / "wrk" / "webhook.lua"
ISSUER = "https://intacct.bench.invalid/webhooks"
KID = "flexsync-bench-1"


# -- the run ------------------------------------------------------------------------------


class Benchmark:
    def __init__(self, args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
        self.args = args
        self.stack = stack
        self.wrk = shutil.which("wrk") or ""
        self.workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="flexsync-bench-")))
        self.run_tag = uuid.uuid4().hex[:8]
        self.servers: dict[str, Process] = {}
        self.ports: dict[str, int] = {}
        self.results: dict[str, list[WrkResult]] = {kind: [] for kind in KINDS}
        self.rabbitmq_version = "?"
        self._runs = 0

    # set-up ------------------------------------------------------------------------------

    def prepare(self) -> None:
        self.vhost, self.amqp_url = create_vhost(self.stack, self.args.amqp_url, self.run_tag)
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

    def _declare_topology(self) -> None:
        from broker.topology import build_topology

        self.rabbitmq_version = declare_run_topology(self.amqp_url, build_topology("7D"))

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
            # wrk sends one body shape with a varying id: a bearer token (the 2025 scheme) fits every
            # request, while a sage-signature token binds one body (its payload_signature).
            intacct_webhook_scheme="bearer-jwks",
            port=port,
            # The default level, as deployed: what the receiver logs per request is part of its cost.
            log_level="INFO",
        )

    # servers -----------------------------------------------------------------------------

    def start_servers(self) -> None:
        for kind in KINDS:
            port = free_port()
            settings = self.settings_for(port)
            env = {
                **os.environ,
                "BENCH_SETTINGS": json.dumps(dataclasses.asdict(settings)),
                "BENCH_WORKERS": str(self.args.workers),
                "BENCH_THREADS": str(self.args.threads),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            }
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
            # Own session: a Ctrl-C reaches only this script, which then stops the servers in
            # order (SIGTERM, wait) instead of racing them.
            process = Process(
                kind, [sys.executable, str(BENCH / "servers.py"), kind], env, self.workdir / f"{kind}.log"
            )
            self.servers[kind], self.ports[kind] = process, port
            self.stack.callback(self._stop_server, kind)
            progress(f"started {kind} server pid {process.pid} on port {port}")
        for kind in KINDS:
            self._wait_healthy(kind, "/healthz")
        # Readiness too: the publisher holds a confirming channel and the database answers.
        self._wait_healthy("receiver", "/readyz")

    def _wait_healthy(self, kind: str, path: str, timeout: float = 30.0) -> None:
        server = self.servers[kind]
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if not server.alive():
                raise BenchError(
                    f"the {kind} server exited with status {server.popen.returncode}:\n" + server.tail(30)
                )
            try:
                status = http_get(self.ports[kind], path)[0]
                if 200 <= status < 300:
                    progress(f"{kind} answers {status} on {path}")
                    return
                last = f"HTTP {status}"
            except OSError as exc:
                last = type(exc).__name__
            time.sleep(0.1)
        raise BenchError(
            f"the {kind} server did not answer 2xx on {path} within {timeout:.0f} s "
            f"(last: {last}):\n" + server.tail(30)
        )

    def _stop_server(self, kind: str) -> None:
        server = self.servers.get(kind)
        if server is None or not server.alive():
            return
        progress(f"stopping {kind} server (SIGTERM to pid {server.pid})")
        server.stop()

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
            before = server_cpu_seconds(kind, self.servers[kind].pid)
            switches_before = worker_switches(self._workers(kind))
            machine_before = steal_ticks()
            wrk = subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            split = connection_split(self.ports[kind], self._workers(kind), connections)
            if max(split) - min(split) <= self.args.balance_slack or attempt == self.args.balance_attempts:
                break
            # The workers hold unequal shares of wrk's connections: the busier one pays more per
            # request (its threads contend for one GIL), so the run would measure the split, not
            # the server. Start again with new connections.
            wrk.kill()
            wrk.communicate()
        profilers = start_profilers(
            self.args, kind, self.servers[kind].pid, duration, label, self.workdir / f"profile-{self._runs}"
        )
        try:
            stdout, stderr = wrk.communicate(timeout=duration + 60)
        except subprocess.TimeoutExpired:
            wrk.kill()
            stdout, stderr = wrk.communicate()
        after = server_cpu_seconds(kind, self.servers[kind].pid)
        switches_after = worker_switches(self._workers(kind))
        machine_after = steal_ticks()
        finish_profilers(self.args, profilers, label)
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
        """The pids of the gunicorn workers of ``kind``."""
        return gunicorn_workers(self.servers[kind].pid)

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
        return report(self, peaks, best, half, paced, pairs, in_queue)

    def _queue_depth(self, queue: str) -> int:
        from kombu import Connection

        with Connection(self.amqp_url, connect_timeout=5) as connection:
            channel = connection.channel()
            _, count, _ = channel.queue_declare(queue=queue, passive=True)
            channel.close()
        return count


# -- options ------------------------------------------------------------------------------


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
