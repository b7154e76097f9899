"""The reference consumer of bench/sync.py's P2, written plainly: a kombu consumer feeding a
pool of handler threads; per event one Intacct GET of the record, one query of its lines, the
project's mapping, one single-item upsert to FlexPoint, then the ack."""

from __future__ import annotations

import contextlib
import queue
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from bench.common import loud, progress
from bench.sync_metrics import cpu_text
from bench.sync_report import Drain
from bench.sync_slots import ProcessSlots
from bench.sync_stage import CAP_PER_COMPANY, SyncStage


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


def reference_drain(stage: SyncStage, messages: list, *, cap_in_memory: bool = False) -> Drain:
    """The plain consumer: per event one GET (+ its lines), one single-item upsert, then ack.

    Its Intacct client is the project's, made the project's way (``create_client``: the cap
    held in the database by ``clients.intacct.slots.CompanySlots``), or with ``cap_in_memory`` the same
    client over a per-company semaphore in this process, which is all one process needs.
    """
    from kombu import Connection, Consumer, Queue

    from clients.flexpoint import FlexPointClient
    from clients.intacct import IntacctClient, TokenProvider, build_session
    from clients.intacct.client import create_client
    from clients.intacct.slots import company_slots
    from store.crypto import SecretBox
    from workers.connections.store import ConnectionStore

    stage.reset_simulators()
    settings = stage.settings()
    handlers = stage.args.reference_handlers
    if cap_in_memory:
        session = build_session(handlers)
        intacct = IntacctClient(
            settings,
            tokens=TokenProvider(settings, session),
            slots=ProcessSlots(CAP_PER_COMPANY),
            session=session,
        )
    else:
        intacct = create_client(settings, company_slots(settings, stage.engine), pool_size=handlers)
    label = "reference (cap in memory)" if cap_in_memory else "reference"
    flexpoint = FlexPointClient(stage.flexpoint_url, stage.flexpoint_token, pool_size=handlers)
    store = ConnectionStore(stage.engine, SecretBox([stage.fernet_key]))
    connections = {c.connection_id: store.get(c.connection_id) for c in stage.connections}
    pool = ThreadPoolExecutor(handlers, thread_name_prefix="reference")
    stage.stack.callback(pool.shutdown, wait=False, cancel_futures=True)

    stage.publish_all(messages, f"P2 {label}")
    stage.wait_for_depth("sync.ar", len(messages))
    finished: queue.SimpleQueue = queue.SimpleQueue()

    def handle(envelope: dict[str, Any]) -> None:
        reference_handle(envelope, connections, intacct, flexpoint)

    def on_message(body: Any, message: Any) -> None:
        future = pool.submit(handle, body)
        future.add_done_callback(lambda f, m=message: finished.put((m, f.exception())))

    acked = errors = 0
    first_error = None
    cpu_before = stage.cpu_now()
    with Connection(stage.amqp_url, connect_timeout=5, heartbeat=0) as connection:
        connection.ensure_connection(max_retries=2)
        channel = connection.channel()
        channel.basic_qos(0, handlers * 2, False)
        queues = [Queue(q.name, no_declare=True) for q in stage.topology.work_queues]
        consumer = Consumer(channel, queues=queues, callbacks=[on_message], accept=["json"])
        started = time.monotonic()
        consumer.consume()
        deadline = started + stage.args.drain_timeout
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
                progress(f"{label}: {acked:,} of {len(messages):,} acked after {last_report - started:.1f} s")
        ended = time.monotonic()
        consumer.cancel()
    pool.shutdown(wait=True)
    intacct.close()
    flexpoint.close()
    note = (
        ""
        if acked >= len(messages)
        else f"NOT DRAINED within {stage.args.drain_timeout:.0f} s: {acked:,} acked"
    )
    if first_error is not None:
        loud(
            f"the {label} consumer failed {errors} times; first: {type(first_error).__name__}: {first_error}"
        )
    drain = Drain(
        label,
        len(messages),
        ended - started,
        intacct=stage.intacct_sandbox("GET", "/stats"),
        flexpoint=stage.flexpoint_sandbox("GET", "/summary")["requests"],
        cpu=cpu_text(cpu_before, stage.cpu_now(), ended - started),
        errors=errors,
        note=note,
    )
    progress(f"{label} drain: {drain.events:,} events in {drain.seconds:.2f} s = {drain.rate:,.0f} ev/s")
    progress(f"{label} CPU during the drain: {drain.cpu}")
    return drain
