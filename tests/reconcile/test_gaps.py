"""Gap signals: the receiver's 5xx and broker losses, a silence of the receivers, and their store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ingest.gaps import BROKER_AWAY, RECEIVER_5XX, RECEIVER_DOWN, GapReporter, GapStore
from store.db import upgrade
from tests.conftest import invoice_event, running_receiver, wait_until
from tests.databases import database_url, engine  # noqa: F401 - fixtures

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_signals_are_noted_in_memory_and_flushed_as_one_row_per_kind_and_connection(engine):  # noqa: F811
    upgrade(engine)
    store = GapStore(engine)
    clock = Clock(T0)
    reporter = GapReporter(store, "web-1", clock=clock)
    for second in range(5):
        clock.now = T0 + timedelta(seconds=second)
        reporter.report(RECEIVER_5XX, "conn-a")
    clock.now = T0 + timedelta(seconds=10)
    reporter.report(RECEIVER_5XX, "conn-b")
    assert store.since(T0 - timedelta(days=1)) == []  # nothing written on the request path
    reporter.flush()
    gaps = store.since(T0 - timedelta(days=1))
    assert sorted((g.connection_id, g.started_at, g.ended_at) for g in gaps) == [
        ("conn-a", T0, T0 + timedelta(seconds=4)),
        ("conn-b", T0 + timedelta(seconds=10), T0 + timedelta(seconds=10)),
    ]
    assert [g.connection_id for g in store.since(T0, ["conn-b"])] == ["conn-b"]
    assert store.newest_beat() == T0 + timedelta(seconds=10)
    reporter.flush()
    assert len(store.since(T0 - timedelta(days=1))) == 2  # nothing noted since: nothing new

    store.prune(T0 + timedelta(seconds=5))
    assert [g.connection_id for g in store.since(T0 - timedelta(days=1))] == ["conn-b"]


def test_a_receiver_starting_after_every_receiver_was_silent_records_the_silence(engine):  # noqa: F811
    upgrade(engine)
    store = GapStore(engine)
    GapReporter(store, "web-old", clock=Clock(T0)).flush()
    # A second receiver beating 40 s later: shorter than any silence that can lose a webhook.
    GapReporter(store, "web-sibling", clock=Clock(T0 + timedelta(seconds=40))).flush()
    assert store.since(T0 - timedelta(days=1)) == []
    back = T0 + timedelta(minutes=20)
    GapReporter(store, "web-new", clock=Clock(back)).flush()
    (gap,) = store.since(T0 - timedelta(days=1))
    assert (gap.kind, gap.connection_id, gap.started_at, gap.ended_at) == (
        RECEIVER_DOWN,
        None,
        T0 + timedelta(seconds=40),
        back,
    )


def test_the_receiver_records_its_503s_and_its_lost_broker_as_gaps(settings):
    """A receiver whose broker is unreachable answers 503; both signals reach the database."""
    with running_receiver(settings.with_overrides(amqp_url="amqp://guest:guest@127.0.0.1:1/%2F")) as running:
        before = datetime.now(UTC) - timedelta(seconds=1)
        assert running.post_hmac(invoice_event(), key="lost-1").status_code == 503
        store = GapStore(running.parts.engine)
        kinds = lambda: {(g.kind, g.connection_id) for g in store.since(before)}  # noqa: E731
        wait_until(
            lambda: {(RECEIVER_5XX, running.connection.connection_id), (BROKER_AWAY, None)} <= kinds(),
            timeout=20,
            message="the 503 and the broker loss recorded",
        )
        assert store.newest_beat() is not None and store.newest_beat() >= before
