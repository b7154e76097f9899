"""The backfill engine through both simulators: everything imported, resumable, cancellable."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from workers.backfill.lease import new_holder
from workers.backfill.plan import resources
from workers.backfill.runner import BackfillRunner, RunOptions
from workers.backfill.store import BackfillStore, Checkpoint

from .conftest import assert_flexpoint_equals_intacct, intacct_records, query_calls

INVOICES = "accounts-receivable/invoice"
OPTIONS = RunOptions(page_size=7, pipeline=3, report_interval=0.0, backoff_base=0.01, backoff_cap=0.05)


def runner(parts, options: RunOptions = OPTIONS) -> BackfillRunner:
    return BackfillRunner(
        parts.settings,
        parts.backfills,
        intacct=parts.intacct,
        flexpoint=parts.flexpoint,
        connections=parts.connections,
        options=options,
    )


def start(parts) -> str:
    holder = new_holder()
    parts.backfills.request(parts.connection.connection_id)
    parts.backfills.claim(parts.connection.connection_id, holder, OPTIONS.lease_seconds)
    return holder


def test_every_resource_is_imported_with_its_lines_and_drafts_are_skipped(parts, intacct):
    holder = start(parts)
    outcome = runner(parts).run(parts.connection.connection_id, holder, threading.Event())

    assert outcome == "completed"
    counts = assert_flexpoint_equals_intacct(parts, intacct)
    assert counts["invoices"] > 0 and counts["customers"] == 30
    invoices = intacct_records(intacct, INVOICES)
    drafts = [r for r in invoices if r["state"] == "draft"]
    reversals = [r for r in invoices if r["state"] == "reversal"]  # mirrors of reversed invoices
    assert drafts, "the seed has draft invoices"
    assert reversals, "the seed has reversal records"
    # The 60 invoices seeded and the reversal record each reversed one left.
    assert len(invoices) == 60 + len(reversals)
    for skipped in drafts + reversals:
        stored = parts.flexpoint.get_record(parts.connection.account_id, "invoices", str(skipped["key"]))
        assert stored is None or stored["deleted"] is True
    points = parts.backfills.checkpoints(parts.connection.connection_id)
    assert all(points[obj.resource].done for obj in resources())
    assert points["invoices"].imported == len(invoices)
    assert points["invoices"].skipped == len(drafts) + len(reversals)
    assert parts.backfills.get(parts.connection.connection_id).state == "completed"
    status = parts.flexpoint.get_status(parts.connection.account_id)
    assert status["state"] == "connected"
    assert status["backfill"]["invoices"] == {"done": len(invoices), "total": len(invoices), "finished": True}
    assert all(entry["finished"] for entry in status["backfill"].values())


class Crash(BaseException):
    """A process dying after page K, as far as the run can tell (no retry, nothing cleaned up)."""


def test_a_crash_after_page_k_resumes_from_the_checkpoint_without_gaps_or_refetching(parts, intacct):
    connection_id = parts.connection.connection_id
    holder = start(parts)
    saved: list[Checkpoint] = []
    store_save = parts.backfills.save

    def save_then_crash(cid, who, point, lease):
        ok = store_save(cid, who, point, lease)
        if point.resource == "invoices" and point.after_key is not None:
            saved.append(point)
            if len(saved) == 3:
                raise Crash("killed after the third invoice page")
        return ok

    parts.backfills.save = save_then_crash
    with pytest.raises(Crash):
        runner(parts).run(connection_id, holder, threading.Event())
    parts.backfills.save = store_save
    at_crash = parts.backfills.checkpoints(connection_id)["invoices"]
    assert at_crash.after_key == saved[-1].after_key and not at_crash.done
    assert 0 < at_crash.imported < 60

    # Nobody takes the run while the crashed holder's lease lives; once it ran out, another does.
    requests.delete(f"{intacct.base_url}/sandbox/stats", timeout=10).raise_for_status()
    assert parts.backfills.claim_next(new_holder(), 30.0) is None
    later = BackfillStore(parts.engine, clock=lambda: time.time() + OPTIONS.lease_seconds + 1)
    other = new_holder()
    assert later.claim_next(other, 3600.0) == connection_id
    assert runner(parts).run(connection_id, other, threading.Event()) == "completed"

    assert_flexpoint_equals_intacct(parts, intacct)
    # The resumed run read only the invoice pages after the checkpoint (+1 count, +1 empty tail).
    invoices = len(intacct_records(intacct, INVOICES))  # the 60 seeded and their reversal records
    pages_left = -(-(invoices - at_crash.imported) // OPTIONS.page_size)
    assert pages_left < invoices // OPTIONS.page_size
    assert query_calls(intacct, INVOICES) == pages_left + 1
    assert query_calls(intacct, "accounts-receivable/customer") == 0  # finished before the crash


def test_cancel_stops_the_run_at_the_next_page(parts):
    connection_id = parts.connection.connection_id
    holder = start(parts)
    store_save = parts.backfills.save

    def cancel_during_customers(cid, who, point, lease):
        ok = store_save(cid, who, point, lease)
        if point.resource == "customers" and point.imported >= 14:
            parts.backfills.cancel(cid)
        return ok

    parts.backfills.save = cancel_during_customers
    assert runner(parts).run(connection_id, holder, threading.Event()) == "cancelled"
    points = parts.backfills.checkpoints(connection_id)
    assert parts.backfills.get(connection_id).state == "cancelled"
    assert points["customers"].imported < 30 and "invoices" not in points


def test_a_disconnected_connection_stops_the_run(parts):
    connection_id = parts.connection.connection_id
    holder = start(parts)
    parts.connections.disconnect(connection_id)
    assert runner(parts).run(connection_id, holder, threading.Event()) == "cancelled"
    assert parts.backfills.checkpoints(connection_id) == {}


def test_a_stop_request_pauses_at_a_page_boundary_and_the_run_stays_resumable(parts, intacct):
    connection_id = parts.connection.connection_id
    holder = start(parts)
    stop = threading.Event()
    store_save = parts.backfills.save

    def stop_during_invoices(cid, who, point, lease):
        if point.resource == "invoices" and point.imported > 0:
            stop.set()
        return store_save(cid, who, point, lease)

    parts.backfills.save = stop_during_invoices
    assert runner(parts).run(connection_id, holder, stop) == "stopped"
    parts.backfills.save = store_save
    run = parts.backfills.get(connection_id)
    assert run.state == "pending" and run.holder is None
    assert not parts.backfills.checkpoints(connection_id)["invoices"].done
    other = new_holder()
    assert parts.backfills.claim_next(other, 30.0) == connection_id
    assert runner(parts).run(connection_id, other, threading.Event()) == "completed"
    assert_flexpoint_equals_intacct(parts, intacct)


def test_flexpoint_failing_for_good_marks_the_run_failed_with_the_reason_then_it_resumes(
    parts, intacct, flexpoint
):
    connection_id = parts.connection.connection_id
    holder = start(parts)
    faults = f"{flexpoint.url}/sandbox/faults"
    token = {"Authorization": f"Bearer {flexpoint.config.token}"}
    requests.put(faults, json={"serverErrorRate": 1.0}, headers=token, timeout=10).raise_for_status()
    options = RunOptions(
        page_size=7, max_attempts=2, report_interval=0.0, backoff_base=0.01, backoff_cap=0.02
    )
    parts.flexpoint._retry = type(parts.flexpoint._retry)(max_attempts=2, base=0.01, cap=0.02)
    assert runner(parts, options).run(connection_id, holder, threading.Event()) == "failed"
    run = parts.backfills.get(connection_id)
    assert run.state == "failed" and "FlexPointUnavailable" in run.error and "entities" in run.error

    requests.put(faults, json={"serverErrorRate": 0.0}, headers=token, timeout=10).raise_for_status()
    parts.backfills.request(connection_id)
    other = new_holder()
    parts.backfills.claim(connection_id, other, 30.0)
    assert runner(parts).run(connection_id, other, threading.Event()) == "completed"
    assert_flexpoint_equals_intacct(parts, intacct)


def test_transient_failures_of_both_sides_are_retried_and_nothing_is_lost(parts, intacct, flexpoint):
    token = {"Authorization": f"Bearer {flexpoint.config.token}"}
    requests.patch(
        f"{intacct.base_url}/sandbox/faults", json={"errorRate": 0.15, "seed": 5}, timeout=10
    ).raise_for_status()
    requests.put(
        f"{flexpoint.url}/sandbox/faults",
        json={"serverErrorRate": 0.15, "seed": 5},
        headers=token,
        timeout=10,
    ).raise_for_status()
    holder = start(parts)
    assert runner(parts).run(parts.connection.connection_id, holder, threading.Event()) == "completed"
    assert_flexpoint_equals_intacct(parts, intacct)
    stats = requests.get(f"{intacct.base_url}/sandbox/stats", timeout=10).json()
    assert sum(int(n) for s, n in stats["responses"]["BACKFILL-CO"].items() if s.startswith("5")) > 0


def test_no_progress_report_after_a_disconnect_overwrites_the_disconnected_status(parts):
    connection_id = parts.connection.connection_id
    account_id = parts.connection.account_id
    holder = start(parts)
    store_save = parts.backfills.save

    def disconnect_during_customers(cid, who, point, lease):
        ok = store_save(cid, who, point, lease)
        if point.resource == "customers" and point.imported >= 14 and parts.connections.get(cid).is_active:
            # What provisioning does on a disconnect message, while this run still holds its lease.
            parts.connections.disconnect(cid)
            parts.flexpoint.report_status(
                account_id, {"connectionId": cid, "state": "disconnected", "reason": "disconnected_by_user"}
            )
        return ok

    parts.backfills.save = disconnect_during_customers
    runner(parts).run(connection_id, holder, threading.Event())
    assert parts.flexpoint.get_status(account_id)["state"] == "disconnected"


def test_no_progress_report_overwrites_a_failed_recheck(parts):
    connection_id = parts.connection.connection_id
    account_id = parts.connection.account_id
    holder = start(parts)
    store_save = parts.backfills.save

    def fail_recheck_during_customers(cid, who, point, lease):
        ok = store_save(cid, who, point, lease)
        if point.resource == "customers" and parts.connections.get(cid).state == "connected":
            # What provisioning does when a reconnect's credentials are refused mid-import.
            parts.connections.set_state(cid, "failed")
            parts.flexpoint.report_status(
                account_id, {"connectionId": cid, "state": "failed", "reason": "invalid_credentials"}
            )
        return ok

    parts.backfills.save = fail_recheck_during_customers
    runner(parts).run(connection_id, holder, threading.Event())
    assert parts.flexpoint.get_status(account_id)["state"] == "failed"
