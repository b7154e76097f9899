"""Replay from the archive stream by time range, connection and resource."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from kombu import Connection

from broker.topology import build_topology, declare_topology
from tests.conftest import own_vhost, wait_until
from tests.ops.conftest import envelope
from tests.tcp_cut import CuttableRelay
from workers.deadletters.archive import ArchiveReplay
from workers.deadletters.commands import replay
from workers.deadletters.selection import Selection

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def amqp_url(broker_base_url: str):
    """A stream of this module's own: its events are back-dated by hours, and a replay stops at
    the first event past --until, which another test's fresh events in a shared stream would be."""
    with own_vhost(broker_base_url, "flexsync-archive") as url:
        yield url


@pytest.fixture(scope="module")
def declared_topology(amqp_url: str):
    topology = build_topology("7D")
    with Connection(amqp_url) as connection:
        declare_topology(connection, topology)
    return topology


@pytest.fixture
def archived(broker, hours_ago):
    """Events of one connection received 5, 4, 2.5, 2 and 0.5 hours ago, plus another connection's."""
    mine, other = str(uuid.uuid4()), str(uuid.uuid4())
    events = []
    for n, age in enumerate([5, 4, 2.5, 2, 0.5, 2.2]):
        connection = other if n == 5 else mine
        moment = hours_ago(age).isoformat().replace("+00:00", "Z")
        body = envelope(connection, "invoices" if n != 3 else "deposits", key=str(n), receivedAt=moment)
        routing_key = f"{body['module']}.{body['resource']}.update"
        broker.publish("intacct.events", routing_key, json.dumps(body).encode(), message_id=body["eventId"])
        events.append(body)
    wait_until(lambda: broker.depth("sync.ar") == 5 and broker.depth("sync.cm") == 1, message="events queued")
    broker.channel.queue_purge(queue="sync.ar")
    broker.channel.queue_purge(queue="sync.cm")
    return mine, events


def test_replay_from_the_archive_moves_the_time_range_of_one_connection(archived, settings, broker):
    mine, events = archived
    result = CliRunner().invoke(
        replay,
        ["--from", "archive", "--connection", mine, "--since", "3h", "--until", "1h", "--yes"],
        obj={"settings": settings},
    )
    assert result.exit_code == 0, result.output
    assert "moved 2, skipped" in result.stdout and "failed 0" in result.stdout
    ar = broker.take_all("sync.ar")
    cm = broker.take_all("sync.cm")
    assert [m.properties["message_id"] for m in ar] == [events[2]["eventId"]]
    assert [m.properties["message_id"] for m in cm] == [events[3]["eventId"]]
    assert ar[0].headers["x-flexsync-original-routing-key"] == "ar.invoices.update"
    assert ar[0].headers["x-flexsync-replayed-from"] == "archive"


def test_archive_filters_by_resource_and_a_dry_run_moves_nothing(archived, settings, broker):
    mine, events = archived
    dry = CliRunner().invoke(
        replay,
        ["--from", "archive", "--connection", mine, "--resource", "invoices", "--dry-run"],
        obj={"settings": settings},
    )
    assert dry.exit_code == 0, dry.output
    assert "dry run: 4 archived events would be replayed" in dry.stdout
    assert broker.depth("sync.ar") == 0

    result = CliRunner().invoke(
        replay,
        ["--from", "archive", "--connection", mine, "--resource", "invoices", "--since", "6h", "--yes"],
        obj={"settings": settings},
    )
    assert result.exit_code == 0, result.output
    moved = [m.properties["message_id"] for m in broker.take_all("sync.ar")]
    assert moved == [
        e["eventId"] for e in events if e["connectionId"] == mine and e["resource"] == "invoices"
    ]
    assert broker.depth("sync.cm") == 0


def test_reason_is_refused_for_the_archive(settings):
    result = CliRunner().invoke(
        replay, ["--from", "archive", "--reason", "x", "--yes"], obj={"settings": settings}
    )
    assert result.exit_code == 1 and "dead letters only" in result.output


def test_a_replay_whose_connection_is_cut_reads_on_from_the_next_offset(
    archived, settings, broker, publisher
):
    """The stream reader is on the worker runtime: a lost connection is taken up again from the
    offset after the last event read, so each event is moved once and none is skipped."""
    mine, events = archived
    relay = CuttableRelay(settings.amqp_url)
    selected = []

    def step(chosen: bool) -> None:
        if chosen:
            selected.append(chosen)
            if len(selected) == 2:
                assert relay.cut() == 1  # mid-read, on the reader's own thread

    try:
        tally = ArchiveReplay(relay.url, publisher, on_step=step, prefetch=2).run(
            Selection(connection=mine, since=datetime.now(UTC) - timedelta(hours=6))
        )
    finally:
        relay.close()
    assert relay.accepted == 2, "the reader did not reconnect"
    assert (tally.selected, tally.moved, tally.failed) == (5, 5, 0)
    moved = [m.properties["message_id"] for m in broker.take_all("sync.ar") + broker.take_all("sync.cm")]
    assert sorted(moved) == sorted(e["eventId"] for e in events if e["connectionId"] == mine)


class _HeldJob:
    """A console job whose first step waits until the test lets it go on (its replay is then
    under way, holding whatever it holds)."""

    def __init__(self) -> None:
        import collections
        import threading

        self.stepping = threading.Event()
        self.go_on = threading.Event()
        self.total = None
        self.counts: dict[str, int] = {}
        self.errors: collections.Counter[str] = collections.Counter()
        self._done = 0

    @property
    def done(self) -> int:
        return self._done

    @done.setter
    def done(self, value: int) -> None:
        self._done = value
        self.stepping.set()
        assert self.go_on.wait(30), "the test never let the console's replay go on"


def test_two_replays_of_one_archive_selection_at_once_publish_it_once(archived, settings, broker):
    """Issue 30 #6: a console job and a CLI run of one selection at the same moment both published."""
    import threading

    from console import actions
    from store.db import create_engine_for, upgrade

    engine = create_engine_for(settings.database_url)
    upgrade(engine)
    engine.dispose()
    mine, events = archived
    # No --until: the stream is this module's, and a read stops at the first event past --until,
    # which an earlier test's would be.
    since = datetime.now(UTC) - timedelta(hours=3)
    selection = Selection(connection=mine, since=since)
    job = _HeldJob()
    outcome: list[str] = []
    console_replay = threading.Thread(
        target=lambda: outcome.append(actions.replay_archive(settings, selection)(job)), daemon=True
    )
    console_replay.start()
    try:
        assert job.stepping.wait(30), "the console's replay never started"
        cli = CliRunner().invoke(
            replay,
            [
                "--from", "archive", "--connection", mine, "--since", since.isoformat(), "--yes",
            ],
            obj={"settings": settings},
        )  # fmt: skip
        assert cli.exit_code == 1, cli.output
        assert "another replay" in cli.output and "running" in cli.output
    finally:
        job.go_on.set()
        console_replay.join(60)
    assert outcome and outcome[0].startswith("moved 3,"), outcome
    ar = broker.take_all("sync.ar")
    cm = broker.take_all("sync.cm")
    assert [m.properties["message_id"] for m in ar] == [events[2]["eventId"], events[4]["eventId"]]
    assert [m.properties["message_id"] for m in cm] == [events[3]["eventId"]]
    # Once it ended, the range is free: the same replay runs again.
    again = CliRunner().invoke(
        replay,
        [
            "--from",
            "archive",
            "--connection",
            mine,
            "--since",
            since.isoformat(),
            "--yes",
        ],
        obj={"settings": settings},
    )
    assert again.exit_code == 0 and "moved 3," in again.output, again.output
