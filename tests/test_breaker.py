"""Circuit breakers shared through the database: open after repeated failures, one probe at a time, close on success."""

from __future__ import annotations

import threading

import pytest

from reliability.breaker import BreakerPolicy, Breakers, intacct_peer
from store.breakers import BreakerStore

POLICY = BreakerPolicy(
    threshold=3, probe_delays=(10.0, 40.0, 100.0), probe_claim_seconds=30.0, cache_seconds=0.0
)
PEER = intacct_peer("conn-1")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def breakers(engine, clock, holder="host-a:1", changes=None, policy=POLICY):
    # rand=1.0: no jitter, so the schedule can be checked to the second.
    return Breakers(
        BreakerStore(engine),
        policy,
        holder=holder,
        clock=clock,
        rand=lambda: 1.0,
        on_change=(lambda peer, old, new: changes.append((peer, old, new))) if changes is not None else None,
    )


def fail(b: Breakers, times: int) -> None:
    for _ in range(times):
        b.failed(b.permit(PEER), "intacct_unavailable")


def test_it_opens_after_the_threshold_of_failures_in_a_row(engine, clock):
    changes: list = []
    b = breakers(engine, clock, changes=changes)
    fail(b, 2)
    assert b.permit(PEER).allowed
    fail(b, 1)
    permit = b.permit(PEER)
    assert not permit.allowed and permit.wait == pytest.approx(10.0)
    assert changes == [(PEER, "closed", "open")]
    [state] = b.states()
    assert (state.peer, state.state, state.failures, state.last_reason) == (
        PEER,
        "open",
        3,
        "intacct_unavailable",
    )


def test_a_success_forgets_the_failures_before_it(engine, clock):
    b = breakers(engine, clock)
    fail(b, 2)
    b.succeeded(b.permit(PEER))
    fail(b, 2)
    assert b.permit(PEER).allowed, "two failures after a success must not open a threshold-3 breaker"


def test_one_process_at_a_time_probes_once_due(engine, clock):
    a = breakers(engine, clock, holder="host-a:1")
    other = breakers(engine, clock, holder="host-b:7")
    fail(a, 3)
    clock.advance(9.9)
    assert not a.permit(PEER).allowed and not other.permit(PEER).allowed
    clock.advance(0.2)
    probe = a.permit(PEER)
    assert probe.allowed and probe.probe
    refused = other.permit(PEER)
    assert not refused.allowed, "a second process must wait while the probe is out"


def test_a_failed_probe_spaces_the_next_further_and_a_good_one_closes_for_everyone(engine, clock):
    changes: list = []
    a = breakers(engine, clock, changes=changes)
    other = breakers(engine, clock, holder="host-b:7")
    fail(a, 3)
    clock.advance(10)
    a.failed(a.permit(PEER), "intacct_unavailable")
    permit = other.permit(PEER)
    assert not permit.allowed and permit.wait == pytest.approx(40.0)
    clock.advance(40)
    a.failed(a.permit(PEER), "intacct_unavailable")
    assert other.permit(PEER).wait == pytest.approx(100.0)
    clock.advance(100)
    a.failed(a.permit(PEER), "intacct_unavailable")
    assert other.permit(PEER).wait == pytest.approx(100.0), "the last delay is the cap"
    clock.advance(100)
    probe = other.permit(PEER)
    assert probe.probe
    other.succeeded(probe)
    assert a.permit(PEER).allowed and not a.permit(PEER).probe
    assert changes == [(PEER, "closed", "open")]
    [state] = a.states()
    assert state.state == "closed" and state.failures == 0 and state.probes == 4


def test_a_probe_whose_process_died_is_taken_over_after_its_claim_runs_out(engine, clock):
    a = breakers(engine, clock, holder="host-a:1")
    other = breakers(engine, clock, holder="host-b:7")
    fail(a, 3)
    clock.advance(10)
    assert a.permit(PEER).probe  # and then host-a dies without an answer
    clock.advance(29)
    assert not other.permit(PEER).allowed
    clock.advance(2)
    assert other.permit(PEER).probe


def test_peers_are_independent(engine, clock):
    b = breakers(engine, clock)
    fail(b, 3)
    assert not b.permit(PEER).allowed
    assert b.permit(intacct_peer("conn-2")).allowed
    assert b.permit("flexpoint").allowed


def test_a_late_failure_of_a_call_made_before_the_opening_does_not_push_the_probe_back(engine, clock):
    b = breakers(engine, clock)
    early = b.permit(PEER)
    fail(b, 3)
    b.failed(early, "intacct_unavailable")
    clock.advance(10)
    assert b.permit(PEER).probe


def test_the_cache_spares_the_database_but_not_for_long(engine, clock):
    cached = breakers(
        engine, clock, policy=BreakerPolicy(threshold=3, probe_delays=(10.0,), cache_seconds=1.0)
    )
    writer = breakers(engine, clock, holder="host-b:7")
    assert cached.permit(PEER).allowed
    fail(writer, 3)
    assert cached.permit(PEER).allowed, "within the cache's second the old answer stands"
    clock.advance(1.5)
    assert not cached.permit(PEER).allowed


def test_while_one_thread_reads_an_expired_state_again_the_others_go_on_with_the_old_one(engine, clock):
    reading, go_on = threading.Event(), threading.Event()
    reads: list[str] = []

    class SlowStore(BreakerStore):
        def get(self, peer):
            reads.append(peer)
            if len(reads) == 2:  # the second read (the cache expired): held until the others ran
                reading.set()
                go_on.wait(10)
            return super().get(peer)

    policy = BreakerPolicy(threshold=3, probe_delays=(10.0,), cache_seconds=1.0)
    b = Breakers(SlowStore(engine), policy, holder="host-a:1", clock=clock, rand=lambda: 1.0)
    assert b.permit(PEER).allowed and reads == [PEER]
    clock.advance(1.5)
    reader = threading.Thread(target=b.permit, args=(PEER,), daemon=True)
    reader.start()
    assert reading.wait(10)
    # Forty calls meanwhile, one for each of a process's threads: none reads the store again.
    assert all(b.permit(PEER).allowed for _ in range(40))
    assert reads == [PEER, PEER]
    go_on.set()
    reader.join(10)
    assert b.permit(PEER).allowed and reads == [PEER, PEER]  # read again, cached for its second


def test_the_breakers_show_on_metrics_as_every_process_sees_them(engine, clock):
    from prometheus_client import CollectorRegistry, generate_latest

    from reliability.breaker import BreakerCollector

    b = breakers(engine, clock)
    fail(b, 3)
    b.permit("flexpoint")
    registry = CollectorRegistry()
    registry.register(
        BreakerCollector(BreakerStore(engine), company_label=lambda company: f"tag-of-{company}")
    )
    text = generate_latest(registry).decode()
    # The company's own id is no label (issue 30 #17): its tag stands for it.
    assert f'flexsync_breaker_open{{peer="{PEER}"}}' not in text
    assert 'flexsync_breaker_open{peer="intacct:tag-of-conn-1"} 1.0' in text
    assert 'flexsync_breaker_failures{peer="intacct:tag-of-conn-1"} 3.0' in text
