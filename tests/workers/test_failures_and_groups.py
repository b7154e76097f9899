"""The retry/dead-letter policy and coalescing, without a broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from broker.topology import RETRY_DELAYS_SECONDS
from clients.flexpoint.errors import FlexPointBreakerOpen, FlexPointRateLimited
from workers.runtime.failures import (
    ATTEMPTS,
    EXCEPTION,
    FAILED_AT,
    FIRST_FAILED_AT,
    ORIGINAL_QUEUE,
    ORIGINAL_ROUTING_KEY,
    REASON,
    Failure,
    RetrySchedule,
    destination,
)
from workers.sync.groups import Coalescer, Event

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def test_a_transient_failure_walks_the_delay_queues_then_stays_on_the_longest_until_the_window_ends():
    failure = Failure("intacct_unavailable", RuntimeError("503 from Intacct"), transient=True)
    policy = RetrySchedule(RETRY_DELAYS_SECONDS, window_seconds=3600)
    headers: dict = {}
    seen = []
    moment = NOW
    for _ in range(len(RETRY_DELAYS_SECONDS) + 3):
        target = destination(
            failure,
            queue="sync.ar",
            routing_key="ar.invoices.update",
            headers=headers,
            now=moment,
            policy=policy,
        )
        assert not target.dead, "a transient failure inside the window is never parked"
        seen.append(target.queue)
        headers = target.headers
        moment += timedelta(minutes=5)
    assert seen == [f"sync.ar.delay.{d}s" for d in RETRY_DELAYS_SECONDS] + ["sync.ar.delay.300s"] * 3
    assert headers[FIRST_FAILED_AT] == "2026-11-24T10:00:00Z"
    late = NOW + timedelta(seconds=3600)
    last = destination(
        failure, queue="sync.ar.delay.300s", routing_key="sync.ar", headers=headers, now=late, policy=policy
    )
    assert last.dead and last.queue == "dead-letter"
    assert last.headers[ATTEMPTS] == len(RETRY_DELAYS_SECONDS) + 4
    assert last.headers[REASON] == "intacct_unavailable:retry_window_exhausted"
    # The origin is the first one, not the delay queue it came back through.
    assert last.headers[ORIGINAL_QUEUE] == "sync.ar"
    assert last.headers[ORIGINAL_ROUTING_KEY] == "ar.invoices.update"
    assert last.headers[EXCEPTION] == "RuntimeError: 503 from Intacct"
    assert last.headers[FAILED_AT] == "2026-11-24T11:00:00Z"
    assert last.headers[FIRST_FAILED_AT] == "2026-11-24T10:00:00Z"


def test_a_handler_bug_is_retried_only_as_often_as_there_are_delays():
    failure = Failure("worker_error", KeyError("customer"), transient=True)
    headers: dict = {}
    for delay in RETRY_DELAYS_SECONDS:
        target = destination(
            failure, queue="sync.ar", routing_key="ar.invoices.update", headers=headers, now=NOW
        )
        assert target.queue == f"sync.ar.delay.{delay}s"
        headers = target.headers
    last = destination(failure, queue="sync.ar", routing_key="ar.invoices.update", headers=headers, now=NOW)
    assert last.dead and last.headers[REASON] == "worker_error:attempts_exhausted"


def test_an_open_breaker_holds_a_message_until_its_probe_and_a_retry_after_waits_as_long_as_said():
    policy = RetrySchedule((1, 5, 30), window_seconds=3600)
    held = Failure(
        "flex_point_unavailable", FlexPointBreakerOpen("not sent", retry_after=12.0), transient=True
    )
    target = destination(
        held, queue="sync.ar", routing_key="ar.x", headers={ATTEMPTS: 3}, now=NOW, policy=policy
    )
    # Back by the probe (12 s away), not 18 s after it; and not counted: it was never tried.
    assert target.queue == "sync.ar.delay.5s" and target.headers[ATTEMPTS] == 3
    soon = Failure(
        "flex_point_unavailable", FlexPointBreakerOpen("not sent", retry_after=1.0), transient=True
    )
    target = destination(soon, queue="sync.ar", routing_key="ar.x", headers={}, now=NOW, policy=policy)
    assert target.queue == "sync.ar.delay.5s", "never the shortest delay for a held message"
    throttled = Failure("rate_limited", FlexPointRateLimited("429", retry_after=3.0), transient=True)
    target = destination(throttled, queue="sync.ar", routing_key="ar.x", headers={}, now=NOW, policy=policy)
    assert target.queue == "sync.ar.delay.5s"
    beyond = Failure(
        "flex_point_unavailable", FlexPointBreakerOpen("not sent", retry_after=999.0), transient=True
    )
    target = destination(beyond, queue="sync.ar", routing_key="ar.x", headers={}, now=NOW, policy=policy)
    assert target.queue == "sync.ar.delay.30s", "never a delay queue that does not exist"


def test_a_permanent_failure_is_parked_at_once():
    target = destination(
        Failure("mapping_error", ValueError("x" * 5000), transient=False),
        queue="sync.gl",
        routing_key="gl.gl-accounts.update",
        headers=None,
    )
    assert target.dead and target.headers[ATTEMPTS] == 1 and target.headers[REASON] == "mapping_error"
    assert len(target.headers[EXCEPTION]) == 2000


def _event(connection: str, resource: str, key: str, occurred: str | None = None) -> Event:
    envelope = {"connectionId": connection, "resource": resource, "key": key, "occurredAt": occurred}
    return Event(envelope, message=None, queue="sync.ar", received=0.0)


def test_events_for_one_record_coalesce_and_groups_leave_by_age_or_size():
    clock = [0.0]
    coalescer = Coalescer(window=0.2, max_keys=3, clock=lambda: clock[0])
    for occurred in ("2026-11-24T10:00:00Z", "2026-11-24T10:00:05Z", None):
        coalescer.add(_event("c1", "invoices", "42", occurred))
    coalescer.add(_event("c1", "customers", "7"))
    assert coalescer.ready() == []
    clock[0] = 0.25
    groups = {g.resource: g for g in coalescer.ready()}
    assert set(groups) == {"invoices", "customers"}
    assert groups["invoices"].keys == ["42"] and len(groups["invoices"].events) == 3
    assert groups["invoices"].observed_at("42") == datetime(2026, 11, 24, 10, 0, 5, tzinfo=UTC)
    for key in ("1", "2", "3"):
        coalescer.add(_event("c2", "invoices", key))
    assert [g.keys for g in coalescer.ready()] == [["1", "2", "3"]]  # full before its window
    coalescer.add(_event("c3", "payments", "9"))
    assert len(coalescer) == 1 and coalescer.drop_all() == 1 and len(coalescer) == 0


def test_a_record_read_before_its_modification_second_settled_is_rechecked():
    from datetime import timedelta

    from workers.sync.handler import SETTLE_SECONDS, _unsettled_keys

    modified = datetime(2026, 11, 24, 10, 0, 5, tzinfo=UTC)
    items = [
        {"externalId": "fresh", "sourceVersion": "2026-11-24T10:00:05Z"},
        {"externalId": "gone", "sourceVersion": "2026-11-24T10:00:05Z", "deleted": True},
    ]
    settled_at = modified + timedelta(seconds=1 + SETTLE_SECONDS)
    assert _unsettled_keys(items, modified + timedelta(milliseconds=400)) == {"fresh"}
    assert _unsettled_keys(items, settled_at - timedelta(microseconds=1)) == {"fresh"}
    assert _unsettled_keys(items, settled_at) == set()


def test_while_workers_are_busy_due_groups_stay_open_and_keep_growing():
    clock = [0.0]
    coalescer = Coalescer(window=0.2, max_keys=500, clock=lambda: clock[0])
    coalescer.add(_event("c1", "invoices", "1"))
    clock[0] = 0.1
    coalescer.add(_event("c2", "invoices", "2"))
    clock[0] = 0.5
    assert [g.connection_id for g in coalescer.ready(limit=1)] == ["c1"]  # the oldest first
    assert coalescer.ready(limit=0) == []
    coalescer.add(_event("c2", "invoices", "3"))  # no idle worker: the group grew meanwhile
    assert [g.keys for g in coalescer.ready(limit=8)] == [["2", "3"]]


def test_waiting_invoice_events_ride_along_with_their_connections_payment_group():
    clock = [0.0]
    coalescer = Coalescer(window=0.2, max_keys=500, clock=lambda: clock[0])
    coalescer.add(_event("c1", "payments", "880"))
    clock[0] = 0.15
    coalescer.add(_event("c1", "invoices", "1042"))  # not yet due on its own
    coalescer.add(_event("c2", "invoices", "7"))  # another connection's: stays
    clock[0] = 0.25
    [group] = coalescer.ready(limit=1)
    assert (group.resource, group.keys) == ("payments", ["880"])
    assert group.rider is not None and group.rider.keys == ["1042"]
    assert [e.envelope["key"] for e in group.all_events] == ["880", "1042"]
    clock[0] = 0.5
    assert [(g.connection_id, g.resource) for g in coalescer.ready()] == [("c2", "invoices")]
    # A rider that was due on its own leaves once, with the payments group.
    coalescer.add(_event("c3", "invoices", "1"))
    coalescer.add(_event("c3", "payments", "2"))
    clock[0] = 1.0
    [group] = coalescer.ready()
    assert group.resource == "payments" and group.rider.keys == ["1"] and len(coalescer) == 0
