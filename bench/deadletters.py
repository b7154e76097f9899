"""`dead list` over 50,000 dead letters: the storing consumer, then the table it reads.

The storing consumer takes the queue into the dead_letters table once (timed apart: that is the
provisioning process's background work), then `dead list` is a query. The pass over the queue it
once was (every message consumed and re-published) is gone since issue 27, so it is no longer
measured here. Prints one summary line for each step on stdout; progress goes to stderr.

    .venv/bin/python bench/deadletters.py [--letters 50000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kombu import Connection

from bench.common import RunFailed, figure, progress, rabbitmqctl, run_guarded
from bench.replay import envelope, publish_all
from broker.admin import start_publisher
from broker.topology import DEAD_LETTER_QUEUE_NAME, build_topology, declare_topology
from config import Settings
from observability.logging import configure_logging
from store.db import create_engine_for, upgrade
from workers.deadletters.operations import DeadLetters, browse
from workers.deadletters.selection import Selection
from workers.deadletters.store import DeadLetterStore
from workers.deadletters.storer import StoringConsumer
from workers.runtime.failures import Failure, destination


def park(url: str, letters: int, connection_id: str) -> None:
    failure = Failure("mapping_error", ValueError("bench"), transient=False)
    batch = []
    for n in range(letters):
        body = envelope(connection_id, n)
        target = destination(failure, queue="sync.ar", routing_key="ar.invoices.update", headers=None)
        batch.append((DEAD_LETTER_QUEUE_NAME, json.dumps(body).encode(), body["eventId"], target.headers))
    publisher = start_publisher(url)
    try:
        progress(f"parking {letters} dead letters")
        publish_all(publisher, batch)
    finally:
        publisher.close()


def after(url: str, store: DeadLetterStore, selection: Selection) -> tuple[float, float, int, int]:
    started = time.monotonic()
    stored = StoringConsumer.for_url(url, store, until_idle=0.5).drain()
    storing = time.monotonic() - started
    started = time.monotonic()
    found = browse(DeadLetters(store, url), selection)
    return storing, time.monotonic() - started, found.matched, stored.stored


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--letters", type=int, default=50_000)
    parser.add_argument(
        "--amqp-url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    )
    args = parser.parse_args()
    configure_logging(Settings(flexsync_env="development", log_level="WARNING"), stream=sys.stderr)

    def body(stack: contextlib.ExitStack) -> int:
        parts = urlsplit(args.amqp_url)
        vhost = f"flexsync-bench-{uuid.uuid4().hex[:8]}"
        progress(f"creating RabbitMQ vhost {vhost}")
        rabbitmqctl("add_vhost", vhost)
        stack.callback(rabbitmqctl, "delete_vhost", vhost)
        rabbitmqctl("set_permissions", "-p", vhost, parts.username or "guest", ".*", ".*", ".*")
        url = urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), "", ""))
        with Connection(url) as connection:
            declare_topology(connection, build_topology("1h"))
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="flexsync-bench-"))
        engine = create_engine_for(f"sqlite:///{scratch}/dead.db")
        stack.callback(engine.dispose)
        upgrade(engine)
        connection_id = str(uuid.uuid4())
        park(url, args.letters, connection_id)
        # `dead list --limit 50` over one connection: the page the console and the CLI show.
        selection = Selection(connection=connection_id, limit=50)
        progress("storing the queue into the table, then dead list from the table")
        storing, seconds, matched_after, stored = after(url, DeadLetterStore(engine), selection)
        figure(
            f"dead list after (table): {matched_after} matched in {seconds:.3f} s "
            f"({stored} letters stored once beforehand by the storing consumer in {storing:.2f} s)"
        )
        if matched_after != args.letters or stored != args.letters:
            raise RunFailed(f"matched {matched_after}, stored {stored} of {args.letters}")
        return 0

    return run_guarded("bench/deadletters.py", body, cleaned="the run's vhost was deleted")


if __name__ == "__main__":
    sys.exit(main())
