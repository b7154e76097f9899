"""P5: replay from the dead-letter queue and from the archive back to the work queues, confirmed.

Runs in a RabbitMQ vhost of its own (deleted afterwards): parks ``--messages`` dead letters the
way the workers do, times ``workers.deadletters.operations.replay`` moving them all to ``sync.ar``; then archives as
many events through ``intacct.events`` and times ``workers.deadletters.archive.ArchiveReplay`` of that range.
Each figure is checked against the queues (every message arrived, nothing left behind).
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
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pika
from kombu import Connection

from bench.common import BenchError, RunFailed, figure, progress, rabbitmqctl, run_guarded
from broker.admin import start_publisher
from broker.publisher import ConfirmingPublisher
from broker.topology import DEAD_LETTER_QUEUE_NAME, build_topology, declare_topology
from config import Settings
from observability.logging import configure_logging
from store.db import create_engine_for, upgrade
from workers.deadletters.archive import ArchiveReplay
from workers.deadletters.operations import DeadLetters, replay
from workers.deadletters.selection import Selection
from workers.deadletters.store import DeadLetterStore
from workers.runtime.failures import Failure, destination

TARGET = 5000.0


def envelope(connection_id: str, n: int) -> dict:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {
        "envelopeVersion": 1, "eventId": str(uuid.uuid4()), "connectionId": connection_id,
        "companyId": "BENCH-CO", "object": "ARINVOICE", "module": "ar", "resource": "invoices",
        "action": "update", "key": str(n), "id": f"INV-{n}", "occurredAt": now, "receivedAt": now,
        "idempotencyKey": f"bench-{n}", "authScheme": "hmac", "payload": {"object": "ARINVOICE", "key": str(n)},
    }  # fmt: skip


def depth(url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return connection.channel().queue_declare(queue=queue, passive=True).method.message_count
    finally:
        connection.close()


def publish_all(publisher, messages: list[tuple[str, bytes, str, dict]]) -> None:
    futures = []
    for routing_key, body, message_id, headers in messages:
        futures.append(publisher.publish(routing_key, body, message_id=message_id, headers=headers))
        if len(futures) >= 5000:
            for future in futures:
                future.result(timeout=60)
            futures = []
    for future in futures:
        future.result(timeout=60)


def met(rate: float) -> str:
    return "MET" if rate >= TARGET else "NOT MET"


def bench_dead(url: str, messages: int, connection_id: str) -> None:
    dead_publisher = start_publisher(url)
    try:
        failure = Failure("mapping_error", ValueError("bench"), transient=False)
        batch = []
        for n in range(messages):
            body = envelope(connection_id, n)
            target = destination(failure, queue="sync.ar", routing_key="ar.invoices.update", headers=None)
            batch.append((DEAD_LETTER_QUEUE_NAME, json.dumps(body).encode(), body["eventId"], target.headers))
        progress(f"parking {messages} dead letters")
        publish_all(dead_publisher, batch)
        if depth(url, DEAD_LETTER_QUEUE_NAME) != messages:
            raise BenchError("the dead letters were not all parked")
        progress("replaying them from dead-letter (stored in a scratch SQLite table first)")
        scratch = tempfile.TemporaryDirectory(prefix="flexsync-bench-")
        engine = create_engine_for(f"sqlite:///{scratch.name}/dead.db")
        upgrade(engine)
        started = time.monotonic()
        outcome = replay(
            DeadLetters(DeadLetterStore(engine), url, dead_publisher), Selection(connection=connection_id)
        )
        seconds = time.monotonic() - started
        engine.dispose()
        scratch.cleanup()
    finally:
        dead_publisher.close()
    arrived, left = depth(url, "sync.ar"), depth(url, DEAD_LETTER_QUEUE_NAME)
    rate = outcome.tally.moved / seconds
    figure(
        f"P5 replay from dead-letter: {outcome.tally.moved} moved in {seconds:.2f} s = {rate:,.0f} msg/s "
        f"(target >= {TARGET:,.0f}: {met(rate)}); failed {outcome.failed}"
    )
    if arrived != messages or left != 0 or outcome.failed:
        raise RunFailed(f"sync.ar holds {arrived} of {messages}, dead-letter still {left}")


def bench_archive(url: str, messages: int, connection_id: str) -> None:
    with Connection(url) as connection:
        connection.default_channel.queue_purge("sync.ar")
    # The receiver's path: through intacct.events into the work queue and the archive.
    events_publisher = ConfirmingPublisher(url, "intacct.events")
    events_publisher.start(wait=10)
    try:
        since = datetime.now(UTC)
        batch = []
        for n in range(messages):
            body = envelope(connection_id, n)
            batch.append(("ar.invoices.update", json.dumps(body).encode(), body["eventId"], {}))
        progress(f"archiving {messages} events through intacct.events")
        publish_all(events_publisher, batch)
    finally:
        events_publisher.close()
    with Connection(url) as connection:
        connection.default_channel.queue_purge("sync.ar")
    publisher = start_publisher(url)
    try:
        progress("replaying them from the archive")
        started = time.monotonic()
        tally = ArchiveReplay(url, publisher).run(Selection(connection=connection_id, since=since))
        seconds = time.monotonic() - started
    finally:
        publisher.close()
    arrived = depth(url, "sync.ar")
    rate = tally.moved / seconds
    figure(
        f"P5 replay from archive: {tally.moved} moved in {seconds:.2f} s = {rate:,.0f} msg/s "
        f"(target >= {TARGET:,.0f}: {met(rate)}); read {tally.read}, failed {tally.failed}"
    )
    if arrived != messages or tally.failed:
        raise RunFailed(f"sync.ar holds {arrived} of {messages}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument(
        "--amqp-url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    )
    args = parser.parse_args()
    # The publisher logs through structlog, which prints to stdout unless configured; stdout
    # carries only the summary lines.
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
        connection_id = str(uuid.uuid4())
        bench_dead(url, args.messages, connection_id)
        bench_archive(url, args.messages, connection_id)
        return 0

    return run_guarded("bench/replay.py", body, cleaned="the run's vhost was deleted")


if __name__ == "__main__":
    sys.exit(main())
