"""The backfill store on SQLite and PostgreSQL: scheduling, leases, checkpoints."""

from __future__ import annotations

import threading
import time

import pytest

from workers.backfill import cancel_backfill, request_backfill
from workers.backfill.store import BackfillStore, Checkpoint, RunBusy

CID = "c0ffee00-0000-4000-8000-000000000001"


def test_request_is_idempotent_and_a_run_is_claimed_once(engine):
    store = BackfillStore(engine)
    request_backfill(engine, CID)
    request_backfill(engine, CID)
    assert store.get(CID).state == "pending"
    assert store.claim_next("a", 30) == CID
    assert store.claim_next("b", 30) is None
    request_backfill(engine, CID)  # keeps the running one
    run = store.get(CID)
    assert run.state == "running" and run.holder == "a"


def test_checkpoints_round_trip_and_only_the_holder_may_save(engine):
    store = BackfillStore(engine)
    store.request(CID)
    store.claim(CID, "a", 30)
    point = Checkpoint("invoices", "1042", imported=2000, skipped=3, unmappable=1, total=5000, done=False)
    assert store.save(CID, "a", point, 30)
    assert not store.save(CID, "b", Checkpoint("invoices", "9999"), 30)
    assert store.checkpoints(CID) == {"invoices": point}
    assert store.save(CID, "a", Checkpoint("invoices", "5000", 5000, 3, 1, 5000, True), 30)
    assert store.checkpoints(CID)["invoices"].done is True


def test_an_abandoned_run_is_taken_over_once_its_lease_ran_out(engine):
    now = [1000.0]
    store = BackfillStore(engine, clock=lambda: now[0])
    store.request(CID)
    assert store.claim_next("crashed", 30) == CID
    now[0] += 29
    assert store.claim_next("b", 30) is None
    with pytest.raises(RunBusy):
        store.claim(CID, "cli", 30)
    now[0] += 2
    assert store.claim_next("b", 30) == CID
    assert not store.renew(CID, "crashed", 30)
    assert not store.save(CID, "crashed", Checkpoint("customers", "7"), 30)
    assert store.renew(CID, "b", 30)


def test_cancel_and_restart_and_rerun_after_completion(engine):
    store = BackfillStore(engine)
    store.request(CID)
    store.claim(CID, "a", 30)
    store.save(CID, "a", Checkpoint("customers", "7", 7), 30)
    cancel_backfill(engine, CID)
    assert store.get(CID).state == "cancelled" and not store.renew(CID, "a", 30)
    request_backfill(engine, CID)  # a cancelled run resumes from its checkpoints
    assert store.get(CID).state == "pending" and store.checkpoints(CID)["customers"].after_key == "7"
    request_backfill(engine, CID, restart=True)
    assert store.checkpoints(CID) == {}
    store.claim(CID, "a", 30)
    store.save(CID, "a", Checkpoint("customers", "9", 9, done=True), 30)
    assert store.release(CID, "a", "completed")
    request_backfill(engine, CID)  # a completed import runs again from scratch
    assert store.get(CID).state == "pending" and store.checkpoints(CID) == {}


def test_failure_is_kept_with_its_reason(engine):
    store = BackfillStore(engine)
    store.request(CID)
    store.claim(CID, "a", 30)
    assert store.release(CID, "a", "failed", error="invoices: FlexPointUnavailable: 503", failed=True)
    run = store.get(CID)
    assert run.state == "failed" and run.error.startswith("invoices:") and run.attempts == 1
    assert run.finished_at is not None


def test_a_run_failed_on_a_transient_error_resumes_by_itself_when_due(engine):
    now = [1000.0]
    store = BackfillStore(engine, clock=lambda: now[0])
    store.request(CID)
    assert store.claim_next("a", 30) == CID
    assert store.save(CID, "a", Checkpoint("customers", "7", 7), 30)
    assert store.release(CID, "a", "failed", error="FlexPoint down", failed=True, resume_in=60)
    run = store.get(CID)
    assert (run.state, run.resume_at, run.resumes) == ("failed", 1060.0, 1)

    now[0] += 59
    assert store.claim_next("b", 30) is None
    now[0] += 1
    assert store.claim_next("b", 30) == CID
    run = store.get(CID)
    assert (run.state, run.holder, run.resume_at) == ("running", "b", None)
    assert store.checkpoints(CID)["customers"].after_key == "7"  # from where it stopped

    # A second failure counts a second resumption; without resume_in the run stays failed.
    assert store.release(CID, "b", "failed", error="again", failed=True, resume_in=300)
    assert store.get(CID).resumes == 2
    now[0] += 300
    assert store.claim_next("c", 30) == CID
    assert store.release(CID, "c", "failed", error="for good", failed=True)
    now[0] += 10_000
    assert store.claim_next("d", 30) is None
    assert store.get(CID).resumes == 2

    # Asked for again (by hand), the count starts over; completing also resets it.
    store.request(CID)
    assert store.get(CID).resumes == 0
    assert store.claim_next("e", 30) == CID
    assert store.release(CID, "e", "failed", error="x", failed=True, resume_in=60)
    now[0] += 60
    assert store.claim_next("f", 30) == CID
    assert store.release(CID, "f", "completed")
    assert (store.get(CID).resumes, store.get(CID).resume_at) == (0, None)


def test_cancel_stops_a_failed_run_waiting_to_resume(engine):
    now = [1000.0]
    store = BackfillStore(engine, clock=lambda: now[0])
    store.request(CID)
    store.claim_next("a", 30)
    store.release(CID, "a", "failed", error="Intacct down", failed=True, resume_in=60)
    assert cancel_backfill(engine, CID)
    now[0] += 3600
    assert store.claim_next("b", 30) is None
    assert store.get(CID).state == "cancelled"


def test_many_claimants_at_once_get_the_run_exactly_once(engine):
    store = BackfillStore(engine)
    store.request(CID)
    winners: list[str] = []
    barrier = threading.Barrier(8)

    def claim(name: str) -> None:
        barrier.wait()
        if store.claim_next(name, 30) == CID:
            winners.append(name)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(winners) == 1
    assert store.get(CID).holder == winners[0]
    assert time.time() < store.get(CID).leased_until <= time.time() + 30
