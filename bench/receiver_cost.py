"""What one webhook costs the receiver's own code, counted in instructions: QUALITY P1's CPU
part without the machine's noise.

    .venv/bin/python bench/receiver_cost.py [--requests 600] [--warmup 200]

bench/receiver.py measures P1 as QUALITY defines it, under gunicorn and wrk against RabbitMQ;
on this shared machine its rates move by 10-20 % between runs, so a change of a few per cent
in the receiver's code cannot be seen there. This benchmark takes the receiver's WSGI app and
the confirm floor's (bench/floor.py) and calls each in one thread with the same requests as
bench/receiver.py sends (RS256 JWT, X-Trusted-Context, unique Idempotency-Key, ~600-byte
body), with a publisher whose broker confirm is already there, so what is counted is the
app's own work: Flask, the checks, the ledger's SQLite lookup and recording, the envelope.
Each app runs under valgrind's callgrind twice, with two request counts; the difference of
the two totals over the difference of the counts is the instructions per webhook, start-up
and warm-up cancelled out. Instructions are repeatable (within ~1 %) whatever else the
machine runs. They are not time: system calls, cache misses and the broker are not in them,
so the ratio is printed, not judged.

Needs valgrind (apt-get install -y valgrind) and nothing else: no broker, no network server
but the JWKS thread on 127.0.0.1. Takes about two minutes (each app's two runs in parallel).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import BenchError, figure, progress, run_guarded  # noqa: E402

APPS = ("receiver", "floor")


class _Confirmed:
    """The receiver's publisher, with every message confirmed the moment it is published."""

    ready = True
    node = "in-process"

    def publish_and_wait(
        self, routing_key: str, body: bytes, *, timeout: float, **kwargs: Any
    ) -> Future[None]:
        future: Future[None] = Future()
        future.set_result(None)
        return future

    def close(self, timeout: float = 5.0) -> None:
        pass


class _FloorConfirmed:
    """The floor's publisher, likewise."""

    def publish(self, body: bytes) -> bool:
        return True


def _child(app_name: str, requests: int, warmup: int, key_file: Path) -> None:
    """Build one app as bench/receiver.py does, then serve ``warmup + requests`` webhooks."""
    from cryptography.hazmat.primitives import serialization

    import bench.receiver as load
    from bench.floor import create_floor_app
    from ingest.app import create_app
    from processes.web import build as build_parts

    with contextlib.ExitStack() as stack:
        args = argparse.Namespace(amqp_url=load.DEFAULT_AMQP_URL)
        bench = load.Benchmark(args, stack)
        bench.amqp_url = args.amqp_url  # named in the settings only; nothing connects to it
        bench.fernet_key = bench._prepare_database()
        # One RSA key for every run: generating one costs a different number of instructions
        # each time, which would not cancel out between the two counts.
        private_key = serialization.load_pem_private_key(key_file.read_bytes(), None)
        bench.jwks_url, bench.token = bench._start_jwks(private_key)
        context = base64.b64encode(
            json.dumps({"clientId": bench._client_id(), "companyId": load.COMPANY}).encode()
        ).decode()
        prefix, suffix = load.webhook_body_template()
        settings = bench.settings_for(0)
        parts = None
        if app_name == "receiver":
            parts = build_parts(settings, publisher=_Confirmed(), listen_for_changes=False)
            stack.callback(parts.close)
            app = create_app(settings, parts=parts)
        else:
            app = create_floor_app(settings.amqp_url, "intacct.events", publisher=_FloorConfirmed())
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": f"/webhooks/intacct/{bench.connection_id}",
            "SCRIPT_NAME": "",
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1:8000",
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.version": (1, 0),
            "wsgi.input_terminated": True,
            "CONTENT_TYPE": "application/json",
            "HTTP_AUTHORIZATION": f"Bearer {bench.token}",
            "HTTP_X_TRUSTED_CONTEXT": context,
        }
        statuses: dict[str, int] = {}

        def start_response(status: str, _headers: Any, _exc_info: Any = None) -> None:
            statuses[status] = statuses.get(status, 0) + 1

        run = f"{os.getpid()}"
        started = time.thread_time()
        for number in range(warmup + requests):
            if number == warmup:
                started = time.thread_time()
            key = f"{run}-{number}"
            body = f"{prefix}{key}{suffix}".encode()
            request = dict(environ, CONTENT_LENGTH=str(len(body)), HTTP_IDEMPOTENCY_KEY=key)
            request["wsgi.input"] = io.BytesIO(body)
            for _chunk in app(request, start_response):
                pass
        spent = time.thread_time() - started
        if parts is not None:
            parts.recorder.flush()
        if set(statuses) != {"202 ACCEPTED"}:
            raise BenchError(f"the {app_name} answered {statuses}, not only 202")
        print(json.dumps({"thread_cpu_us": spent / requests * 1e6}))


def _callgrind(app_name: str, requests: int, warmup: int, key_file: Path, workdir: Path) -> subprocess.Popen:
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={workdir / f'{app_name}-{requests}.out'}",
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        app_name,
        "--requests",
        str(requests),
        "--warmup",
        str(warmup),
        "--key-file",
        str(key_file),
    ]
    # Dicts and sets iterate in one order in every run: fewer instructions that differ by chance.
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _collected(process: subprocess.Popen, what: str) -> int:
    _out, err = process.communicate()
    if process.returncode != 0:
        raise BenchError(f"{what} failed (exit {process.returncode}):\n{err[-3000:]}")
    found = re.search(r"Collected\s*:\s*(\d+)", err)
    if not found:
        raise BenchError(f"{what}: callgrind printed no total:\n{err[-2000:]}")
    return int(found.group(1))


def _plain_cpu(app_name: str, requests: int, warmup: int, key_file: Path) -> float:
    """Thread CPU per webhook of one run without valgrind (time: noisy, for scale only)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", app_name]
    command += ["--requests", str(requests * 10), "--warmup", str(warmup), "--key-file", str(key_file)]
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"{app_name} without valgrind failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["thread_cpu_us"]


def _measure(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    if not shutil.which("valgrind"):
        raise BenchError("valgrind is not installed: apt-get install -y valgrind")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="flexsync-cost-")))
    key_file = workdir / "signing-key.pem"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    small = max(10, args.requests // 2)
    large = small + args.requests
    per_request: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for app_name in APPS:
        progress(f"{app_name}: callgrind over {args.warmup} + {small} and {args.warmup} + {large} webhooks")
        runs = [_callgrind(app_name, count, args.warmup, key_file, workdir) for count in (small, large)]
        for run in runs:
            stack.callback(_stop, run)
        totals = [_collected(run, f"{app_name} under callgrind") for run in runs]
        per_request[app_name] = (totals[1] - totals[0]) / (large - small)
        cpu[app_name] = _plain_cpu(app_name, args.requests, args.warmup, key_file)
        progress(
            f"{app_name}: {per_request[app_name]:,.0f} instructions per webhook; "
            f"{cpu[app_name]:.0f} us of thread CPU without valgrind"
        )
    ratio = per_request["receiver"] / per_request["floor"]
    figure(
        f"P1 cost of the app's own code (one thread, broker confirm already there, callgrind): "
        f"receiver {per_request['receiver']:,.0f} instructions per webhook, floor {per_request['floor']:,.0f}; "
        f"receiver/floor {ratio:.2f} (not judged: instructions are not time) "
        f"[thread CPU without valgrind, noisy: receiver {cpu['receiver']:.0f} us, floor {cpu['floor']:.0f} us]"
    )
    return 0


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--requests", type=int, default=600, help="webhooks counted (the difference of the two runs)"
    )
    parser.add_argument("--warmup", type=int, default=200, help="webhooks served before counting starts")
    parser.add_argument("--child", choices=APPS, help=argparse.SUPPRESS)
    parser.add_argument("--key-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.requests, args.warmup, args.key_file)
        return 0
    if args.requests < 10 or args.warmup < 0:
        parser.error("--requests must be at least 10 and --warmup at least 0")
    return run_guarded(
        "receiver_cost",
        lambda stack: _measure(args, stack),
        cleaned="the child processes and the temporary directory",
    )


if __name__ == "__main__":
    sys.exit(main())
