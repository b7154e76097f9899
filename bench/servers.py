"""The three servers of the receiver benchmark (QUALITY P1), each run in its own process.

    python bench/servers.py receiver|floor|bare

reads ``BENCH_SETTINGS`` (a JSON object of :class:`config.Settings` fields), ``BENCH_WORKERS``
and ``BENCH_THREADS`` from the environment and runs gunicorn until SIGTERM.

Both servers are :class:`ingest.server.ReceiverServer` instances, so they get exactly the same
gunicorn configuration (ingest.server.ReadingThreadWorker, workers, threads, keepalive, timeouts, hooks); only ``load()``
differs:

- ``receiver``: the project's receiver, ``processes.web.receiver_app`` (what ``flexsync web`` serves);
- ``floor``: the confirm floor (``bench/floor.py``): parse, publish with a confirm, answer 202;
- ``bare``: a Flask endpoint on the same path that parses the JSON body and answers 202.

"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flask import Flask, request  # noqa: E402

from config import Settings  # noqa: E402
from ingest.server import ReceiverServer  # noqa: E402


def create_bare_app() -> Flask:
    """The reference: parse the JSON body, answer 202, nothing else."""
    app = Flask("bare")

    @app.post("/webhooks/intacct/<connection_id>")
    def receive(connection_id: str):
        request.get_json()
        return {"status": "accepted"}, 202

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    return app


class BenchReceiverServer(ReceiverServer):
    """The receiver exactly as the ``web`` process builds it (``processes.web.receiver_app``)."""

    def load(self):
        from processes.web import receiver_app

        return receiver_app(self._settings)


class BareServer(ReceiverServer):
    def load(self):
        return create_bare_app()


class FloorServer(ReceiverServer):
    def load(self):
        from bench.floor import create_floor_app
        from broker.topology import EVENTS_EXCHANGE

        return create_floor_app(self._settings.amqp_url, EVENTS_EXCHANGE.name)


SERVERS = {"receiver": BenchReceiverServer, "floor": FloorServer, "bare": BareServer}


def settings_from_json(text: str) -> Settings:
    values = json.loads(text)
    values["flexsync_secret_key"] = tuple(values.get("flexsync_secret_key") or ())
    return Settings(**values)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in SERVERS:
        print("usage: servers.py receiver|floor|bare (configured through BENCH_* variables)", file=sys.stderr)
        return 2
    settings = settings_from_json(os.environ["BENCH_SETTINGS"])
    workers = int(os.environ.get("BENCH_WORKERS", "2"))
    threads = int(os.environ.get("BENCH_THREADS", "8"))

    from observability.logging import configure_logging

    configure_logging(settings)
    # As ingest.server.serve does before gunicorn forks (metrics in multiprocess mode).
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=f"flexsync-bench-{argv[1]}-")
    SERVERS[argv[1]](settings, workers=workers, threads=threads).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
