"""The payment postings table on SQLite and PostgreSQL: the claim, its takeover, compare-and-set moves."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from sqlalchemy import update

from store.models import PaymentPosting
from workers.writeback.store import LostClaim, PostingStore, reference_for


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def postings(engine, clock) -> PostingStore:
    return PostingStore(engine, clock=clock)


def test_a_first_claim_creates_the_row_pending_with_its_reference(postings):
    posting = postings.claim("acct-1", "pay-1", "conn-1", lease_seconds=60)
    assert posting is not None
    assert (posting.state, posting.reference, posting.attempts) == (
        "pending",
        reference_for("acct-1", "pay-1"),
        0,
    )
    assert len(posting.reference) == 21 and posting.company_id is None and posting.create_key is None
    assert posting.claim_holder


def test_a_new_payment_is_created_claimed_in_one_write_and_only_once(postings, clock):
    posting = postings.claim_new("acct-1", "pay-1", "conn-1", lease_seconds=60)
    assert posting is not None
    assert (posting.state, posting.reference, posting.attempts) == (
        "pending",
        reference_for("acct-1", "pay-1"),
        0,
    )
    assert posting.claim_holder and posting.claim_until == clock.now + 60
    assert postings.get("acct-1", "pay-1") == posting
    # A row already there is left alone: its claim is taken the usual way.
    assert postings.claim_new("acct-1", "pay-1", "conn-1", lease_seconds=60) is None
    assert postings.claim("acct-1", "pay-1", "conn-1", lease_seconds=60) is None  # ours still
    postings.release(posting)
    assert postings.claim("acct-1", "pay-1", "conn-1", lease_seconds=60) is not None


def test_a_move_naming_no_column_is_refused(postings):
    posting = postings.claim_new("acct-1", "pay-1", "conn-1", lease_seconds=60)
    assert posting is not None
    with pytest.raises(ValueError, match="no column"):
        postings.move(posting, "pending", not_a_column=1)


def test_one_claim_at_a_time_until_released_or_run_out(postings, clock):
    first = postings.claim("acct-1", "pay-1", "conn-1", lease_seconds=60)
    assert postings.claim("acct-1", "pay-1", "conn-1", lease_seconds=60) is None
    postings.release(first)
    second = postings.claim("acct-1", "pay-1", "conn-1", lease_seconds=60)
    assert second is not None
    clock.now += 61
    third = postings.claim("acct-1", "pay-1", "conn-1", lease_seconds=60)
    assert third is not None and third.claim_holder != second.claim_holder
    # The old holder's moves are refused: its claim went to another worker.
    with pytest.raises(LostClaim):
        postings.intend(second, "creating", lease_seconds=60, settle_seconds=30)


def test_concurrent_claims_have_exactly_one_winner(postings):
    results: list[object] = []
    barrier = threading.Barrier(8)

    def claim() -> None:
        barrier.wait()
        results.append(postings.claim("acct-1", "pay-race", "conn-1", lease_seconds=60))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r is not None for r in results) == 1


def test_a_claim_of_a_dead_process_on_this_node_is_taken_over_at_once(postings, engine):
    posting = postings.claim("acct-1", "pay-1", "conn-1", lease_seconds=3600)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = dead.stdout.strip()
    node, _pid, thread, token = posting.claim_holder.rsplit(":", 3)
    with engine.begin() as conn:
        conn.execute(
            update(PaymentPosting.__table__)
            .where(PaymentPosting.__table__.c.payment_id == "pay-1")
            .values(claim_holder=f"{node}:{pid}:{thread}:{token}")
        )
    taken = postings.claim("acct-1", "pay-1", "conn-1", lease_seconds=60)
    assert taken is not None and taken.claim_holder != posting.claim_holder


def test_the_intent_is_committed_with_a_renewed_claim(postings, clock):
    posting = postings.claim("acct-1", "pay-1", "conn-1", lease_seconds=10)
    clock.now += 5
    creating = postings.intend(posting, "creating", lease_seconds=100, settle_seconds=30)
    stored = postings.get("acct-1", "pay-1")
    assert stored.state == "creating" and stored.attempts == 1
    assert stored.intent_at == clock.now and stored.claim_until == clock.now + 100
    assert stored.settle_by == clock.now + 30
    assert postings.lease_left(creating) == 100


def test_the_key_is_recorded_even_after_the_claim_was_lost_and_never_replaced(postings, clock):
    posting = postings.intend(
        postings.claim("acct-1", "pay-1", "conn-1", lease_seconds=10),
        "creating",
        lease_seconds=10,
        settle_seconds=5,
    )
    clock.now += 11
    other = postings.claim("acct-1", "pay-1", "conn-1", lease_seconds=10)
    assert other is not None
    posted = postings.record_posted(posting, "5678")
    assert (posted.state, posted.intacct_key) == ("posted", "5678")
    # A second key never replaces the first: the first one Intacct gave is the payment.
    assert postings.record_posted(other, "9999").intacct_key == "5678"


def test_recording_the_key_can_give_the_claim_back_in_the_same_write_only_if_it_is_ours(postings, clock):
    posting = postings.claim_new("acct-1", "pay-1", "conn-1", lease_seconds=10)
    posted = postings.record_posted(posting, "5678", release=True)
    assert (posted.state, posted.intacct_key, posted.claim_holder, posted.claim_until) == (
        "posted", "5678", None, None,
    )  # fmt: skip
    assert postings.claim("acct-1", "pay-1", "conn-1", lease_seconds=10) is not None  # free at once
    # A claim lost meanwhile is the new holder's: the key is recorded, the claim left alone.
    lost = postings.claim_new("acct-1", "pay-2", "conn-1", lease_seconds=10)
    clock.now += 11
    other = postings.claim("acct-1", "pay-2", "conn-1", lease_seconds=10)
    posted = postings.record_posted(lost, "5679", release=True)
    assert (posted.intacct_key, posted.claim_holder, posted.claim_until) == (
        "5679", other.claim_holder, other.claim_until,
    )  # fmt: skip
    # Without ``release`` the claim stays ours until :meth:`release`.
    kept = postings.claim_new("acct-1", "pay-3", "conn-1", lease_seconds=10)
    assert postings.record_posted(kept, "5680").claim_holder == kept.claim_holder


def test_a_reverse_first_records_the_payment_cancelled_once(postings):
    assert postings.cancel_if_new("acct-1", "pay-1", "conn-1", requested_at=None)
    assert not postings.cancel_if_new("acct-1", "pay-1", "conn-1", requested_at=None)
    assert postings.get("acct-1", "pay-1").state == "cancelled"
    claimed = postings.claim("acct-1", "pay-1", "conn-1", lease_seconds=60)
    assert claimed.state == "cancelled"


def test_list_filters_by_connection_and_state(postings):
    for number in range(3):
        postings.claim("acct-1", f"pay-{number}", "conn-a" if number else "conn-b", lease_seconds=60)
    postings.cancel_if_new("acct-1", "pay-9", "conn-a", requested_at=None)
    assert {p.payment_id for p in postings.list(connection_id="conn-a")} == {"pay-1", "pay-2", "pay-9"}
    assert [p.payment_id for p in postings.list(state="cancelled")] == ["pay-9"]
    with pytest.raises(ValueError):
        postings.list(state="lost")
