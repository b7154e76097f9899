"""The background worker: claims scheduled and abandoned runs, never runs one import twice at once."""

from __future__ import annotations

import dataclasses
import math

import requests

from store.db import create_engine_for
from tests.conftest import wait_until
from workers.backfill import BackfillWorker, RunOptions, cancel_backfill, request_backfill
from workers.backfill.plan import resources

from .conftest import assert_flexpoint_equals_intacct, query_calls

INVOICES = "accounts-receivable/invoice"
OPTIONS = RunOptions(page_size=7, report_interval=0.0, lease_seconds=3.0)


def worker(parts, engine=None, options: RunOptions = OPTIONS) -> BackfillWorker:
    return BackfillWorker(
        parts.settings,
        engine or parts.engine,
        intacct=parts.intacct,
        flexpoint=parts.flexpoint,
        connections=parts.connections,
        poll_interval=0.05,
        options=options,
    )


def state_of(parts) -> str | None:
    run = parts.backfills.get(parts.connection.connection_id)
    return run.state if run else None


def finished(points) -> bool:
    return all(points.get(obj.resource) and points[obj.resource].done for obj in resources())


def test_two_workers_run_a_requested_backfill_once(parts, intacct):
    requests.delete(f"{intacct.base_url}/sandbox/stats", timeout=10).raise_for_status()
    second_engine = create_engine_for(parts.settings.database_url)  # as another process would
    workers = [worker(parts), worker(parts, second_engine)]
    for each in workers:
        each.start()
    try:
        request_backfill(parts.engine, parts.connection.connection_id)
        wait_until(lambda: state_of(parts) == "completed", timeout=60, message="the backfill completed")
    finally:
        for each in workers:
            each.stop()
        second_engine.dispose()
    assert_flexpoint_equals_intacct(parts, intacct)
    # One count query and one query per page: a second runner would have doubled them.
    assert query_calls(intacct, INVOICES) == 1 + math.ceil(60 / OPTIONS.page_size)


def test_a_run_abandoned_by_a_crashed_holder_is_taken_over(parts, intacct):
    connection_id = parts.connection.connection_id
    request_backfill(parts.engine, connection_id)
    parts.backfills.claim(connection_id, "crashed-host:1:1:dead", 0.5)  # and never renewed
    background = worker(parts)
    background.start()
    try:
        wait_until(lambda: state_of(parts) == "completed", timeout=60, message="the run taken over")
    finally:
        background.stop()
    assert_flexpoint_equals_intacct(parts, intacct)


def test_stop_leaves_the_run_resumable_and_cancel_stops_it(parts, intacct):
    connection_id = parts.connection.connection_id
    # Slow Intacct down so that the run is surely in the middle when stopped.
    faults = f"{intacct.base_url}/sandbox/faults"
    requests.patch(faults, json={"latencyMs": 40}, timeout=10).raise_for_status()
    first = worker(parts)
    first.start()
    request_backfill(parts.engine, connection_id)
    wait_until(lambda: parts.backfills.checkpoints(connection_id), timeout=30, message="a first checkpoint")
    first.stop()
    assert state_of(parts) == "pending"
    partial = parts.backfills.checkpoints(connection_id)
    assert not finished(partial)

    requests.patch(faults, json={"latencyMs": 0}, timeout=10).raise_for_status()
    second = worker(parts)
    second.start()
    try:
        wait_until(lambda: state_of(parts) == "completed", timeout=60, message="the resumed backfill")
    finally:
        second.stop()
    assert_flexpoint_equals_intacct(parts, intacct)

    # A re-import from scratch, slow enough that running it to the end would take over 20 s.
    requests.patch(faults, json={"latencyMs": 500}, timeout=10).raise_for_status()
    request_backfill(parts.engine, connection_id)
    third = worker(parts)
    third.start()
    try:
        wait_until(lambda: connection_id in third.running(), timeout=30, message="the re-import running")
        assert cancel_backfill(parts.engine, connection_id)
        # The runner itself lets go (its heartbeat sees the cancel, or its next checkpoint is
        # refused) and stops at the next page, long before it could have finished.
        wait_until(lambda: not third.running(), timeout=6, message="the runner to stop on the cancel")
    finally:
        third.stop()
        requests.patch(faults, json={"latencyMs": 0}, timeout=10).raise_for_status()
    assert state_of(parts) == "cancelled"
    assert not finished(parts.backfills.checkpoints(connection_id))


def test_a_run_that_gave_up_while_intacct_was_down_resumes_by_itself(parts, intacct):
    connection_id = parts.connection.connection_id
    faults = f"{intacct.base_url}/sandbox/faults"
    patient = dataclasses.replace(OPTIONS, max_attempts=2, backoff_base=0.01, resume_delays=(1.0, 1.0))
    background = worker(parts, options=patient)
    requests.patch(faults, json={"errorRate": 1.0, "errorStatus": 503}, timeout=10).raise_for_status()
    try:
        background.start()
        request_backfill(parts.engine, connection_id)
        failed = wait_until(
            lambda: (run := parts.backfills.get(connection_id)).state == "failed" and run,
            timeout=60,
            message="the run to give up while Intacct answers 503",
        )
        assert failed.resume_at is not None and failed.resumes == 1 and "503" in (failed.error or "")
        requests.patch(faults, json={"errorRate": 0.0}, timeout=10).raise_for_status()
        # Nobody asks for it again: the worker takes it up once it is due.
        wait_until(lambda: state_of(parts) == "completed", timeout=60, message="the run resumed and done")
    finally:
        background.stop()
        requests.delete(faults, timeout=10).raise_for_status()
    assert_flexpoint_equals_intacct(parts, intacct)
