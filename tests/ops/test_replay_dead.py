"""Replay and purge from the dead-letter queue: exactly the selection moves, nothing is lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import Future
from pathlib import Path

import pytest
from click.testing import CliRunner

from broker.publisher import PublishRejected
from broker.topology import DEAD_LETTER_QUEUE_NAME, WRITEBACK_QUEUE_NAME
from tests.conftest import wait_until
from workers.deadletters.commands import purge, replay
from workers.deadletters.operations import DeadLetters
from workers.deadletters.operations import purge as purge_dead
from workers.deadletters.operations import replay as replay_dead
from workers.deadletters.selection import Selection
from workers.deadletters.store import LetterQuery
from workers.runtime.failures import Failure, destination
from workers.writeback.messages import POST_ROUTING_KEY

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def two_accounts(parking):
    """40 dead letters: 25 of connection A (invoices, customers), 15 of connection B."""
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    parked = []
    for n in range(40):
        connection = a if n % 8 < 5 else b
        resource = "invoices" if n % 2 else "customers"
        parked.append(parking.park(connection, resource, key=str(n)))
    parking.wait_parked(len(parked))
    selected = [p for p in parked if p.envelope["connectionId"] == a]
    others = [p for p in parked if p.envelope["connectionId"] == b]
    return a, selected, others


def ids(parked) -> list[str]:
    return [p.message_id for p in parked]


def test_replay_moves_exactly_the_selection_with_attempts_reset(two_accounts, settings, broker, parking):
    a, selected, others = two_accounts
    result = CliRunner().invoke(
        replay, ["--from", "dead", "--connection", a, "--yes"], obj={"settings": settings}
    )
    assert result.exit_code == 0, result.output
    assert f"moved {len(selected)}, skipped {len(others)} (not selected), failed 0" in result.stdout

    moved = broker.take_all("sync.ar")
    assert sorted(m.properties["message_id"] for m in moved) == sorted(ids(selected))
    for message in moved:
        headers = message.headers
        assert "x-flexsync-attempts" not in headers and "x-flexsync-reason" not in headers
        assert headers["x-flexsync-original-routing-key"].startswith("ar.")
        assert headers["x-flexsync-replayed-from"] == "dead"
        assert json.loads(message.body)["connectionId"] == a
    assert parking.still_dead() == ids(others)


def test_dry_run_counts_and_moves_nothing(two_accounts, settings, broker, parking):
    a, selected, others = two_accounts
    result = CliRunner().invoke(
        replay, ["--from", "dead", "--connection", a, "--dry-run"], obj={"settings": settings}
    )
    assert result.exit_code == 0, result.output
    assert f"dry run: {len(selected)} dead letters would be replayed" in result.stdout
    assert broker.depth("sync.ar") == 0
    everything = sorted(selected + others, key=lambda p: int(p.envelope["key"]))
    assert parking.still_dead() == ids(everything)


def test_without_yes_replay_asks_and_a_no_moves_nothing(two_accounts, settings, broker, parking):
    a, selected, others = two_accounts
    result = CliRunner().invoke(
        replay, ["--from", "dead", "--connection", a], input="n\n", obj={"settings": settings}
    )
    assert result.exit_code == 1
    assert f"Replay {len(selected)} dead letters to their work queues?" in result.output
    assert broker.depth("sync.ar") == 0
    assert parking.dead_count() == len(selected) + len(others)


def test_limit_and_rate_are_honoured(two_accounts, amqp_url, publisher, broker, dead_store):
    a, selected, _ = two_accounts
    started = time.monotonic()
    tally = replay_dead(
        DeadLetters(dead_store, amqp_url, publisher, rate=20), Selection(connection=a, limit=7)
    ).tally
    assert tally.moved == 7
    assert time.monotonic() - started >= 6 / 20  # 7 moves at 20/s need at least 6 intervals
    assert sorted(m.properties["message_id"] for m in broker.take_all("sync.ar")) == sorted(ids(selected[:7]))


class Killed(Exception):
    """Stands for the process being killed mid-replay: nothing after it runs."""


def test_a_replay_interrupted_halfway_then_run_again_moves_everything_selected_once(
    two_accounts, amqp_url, publisher, broker, dead_store, parking
):
    a, selected, others = two_accounts
    steps = 0

    def kill_after_15(letter, decision) -> None:
        nonlocal steps
        steps += 1
        if steps == 15:
            raise Killed

    with pytest.raises(Killed):
        replay_dead(
            DeadLetters(dead_store, amqp_url, publisher, batch=10, on_step=kill_after_15),
            Selection(connection=a),
        )
    # It died halfway: some selected messages reached the work queue, not all.
    wait_until(lambda: broker.depth("sync.ar") > 0, message="the first run's moves")
    assert broker.depth("sync.ar") < len(selected)

    tally = replay_dead(DeadLetters(dead_store, amqp_url, publisher), Selection(connection=a)).tally
    assert tally.failed == 0
    arrived = Counter(m.properties["message_id"] for m in broker.take_all("sync.ar"))
    assert set(arrived) == set(ids(selected))
    # Only what was confirmed-but-not-acknowledged when it died can arrive twice.
    assert sum(arrived.values()) - len(selected) <= 15
    # Rows are marked before the next step runs: each letter moved once, none twice.
    assert sum(arrived.values()) == len(selected)
    assert dead_store.count(LetterQuery(state="replayed")) == len(selected)
    remaining = parking.still_dead()
    assert sorted(remaining) == sorted(ids(others))


def test_purge_removes_only_the_selection_and_keeps_the_order(two_accounts, settings, broker, parking):
    a, selected, others = two_accounts
    result = CliRunner().invoke(
        purge, ["--connection", a, "--resource", "invoices"], input="y\n", obj={"settings": settings}
    )
    assert result.exit_code == 0, result.output
    purged = [p for p in selected if p.envelope["resource"] == "invoices"]
    assert f"Delete {len(purged)} dead letters for good?" in result.output
    assert f"removed {len(purged)}, skipped {len(selected) + len(others) - len(purged)}" in result.stdout
    kept = [
        p.message_id
        for p in sorted(selected + others, key=lambda p: int(p.envelope["key"]))
        if p not in purged
    ]
    assert parking.still_dead() == kept
    assert broker.depth("sync.ar") == 0


def test_a_replay_process_killed_with_sigkill_then_run_again_loses_nothing(
    two_accounts, settings, broker, parking, dead_store
):
    a, selected, others = two_accounts
    env = {
        "PATH": os.environ.get("PATH", ""),
        "FLEXSYNC_ENV": "test",
        "AMQP_URL": settings.amqp_url,
        "DATABASE_URL": settings.database_url,
        "FLEXSYNC_SECRET_KEY": ",".join(settings.flexsync_secret_key),
        "LOG_FORMAT": "json",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "replay",
            "--from",
            "dead",
            "--connection",
            a,
            "--yes",
            "--rate",
            "10",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # At 10 messages/s the 25 selected take 2.5 s: kill it once a few have moved.
        wait_until(lambda: broker.depth("sync.ar") >= 5, timeout=30, message="the first moves")
    finally:
        process.kill()
        process.wait(timeout=10)
    assert broker.depth("sync.ar") < len(selected), "killed too late to show anything"

    result = CliRunner().invoke(
        replay, ["--from", "dead", "--connection", a, "--yes"], obj={"settings": settings}
    )
    assert result.exit_code == 0, result.output
    arrived = Counter(m.properties["message_id"] for m in broker.take_all("sync.ar"))
    assert set(arrived) == set(ids(selected))
    # At 10/s a replay settles every 5 copies: a kill repeats at most that one chunk.
    assert sum(arrived.values()) - len(selected) <= 5
    assert dead_store.count(LetterQuery(state="replayed")) == len(selected)
    remaining = parking.still_dead()
    assert sorted(remaining) == sorted(ids(others))
    # A third run finds nothing left to move.
    again = CliRunner().invoke(
        replay, ["--from", "dead", "--connection", a, "--yes"], obj={"settings": settings}
    )
    assert "moved 0," in again.stdout and broker.depth("sync.ar") == 0


class FailingThird:
    """The real publisher, except that RabbitMQ refuses the third copy."""

    def __init__(self, publisher) -> None:
        self._publisher = publisher
        self.calls = 0

    def publish(self, *args, **kwargs):
        self.calls += 1
        if self.calls == 3:
            refused: Future[None] = Future()
            refused.set_exception(PublishRejected("nack from the test"))
            return refused
        return self._publisher.publish(*args, **kwargs)


def test_a_refused_copy_neither_hangs_the_pass_nor_loses_its_dead_letter(
    two_accounts, amqp_url, publisher, broker, dead_store, parking
):
    a, selected, others = two_accounts
    sweeper = DeadLetters(dead_store, amqp_url, FailingThird(publisher), batch=10)
    tally = replay_dead(sweeper, Selection(connection=a)).tally
    assert tally.failed >= 1 and tally.errors["nack from the test"] == 1
    moved = [m.properties["message_id"] for m in broker.take_all("sync.ar")]
    assert len(moved) == tally.moved and len(set(moved)) == len(moved)
    remaining = parking.still_dead()
    # Every selected letter is either moved or still parked; nothing else moved.
    assert sorted(moved + remaining) == sorted(ids(selected) + ids(others))
    assert set(moved) <= set(ids(selected))


def test_purge_removes_no_more_than_was_confirmed(two_accounts, settings, broker, parking, monkeypatch):
    a, selected, others = two_accounts
    late = []

    def confirm_while_more_arrive(text, abort):
        # Matching dead letters parked between the count and the answer.
        late.extend(parking.park(a, "invoices", key=f"late-{n}") for n in range(2))
        parking.wait_parked(len(selected) + len(others) + 2)
        return True

    monkeypatch.setattr("workers.deadletters.commands.click.confirm", confirm_while_more_arrive)
    result = CliRunner().invoke(purge, ["--connection", a], obj={"settings": settings})
    assert result.exit_code == 0, result.output
    assert f"removed {len(selected)}," in result.stdout
    remaining = set(parking.still_dead())
    assert remaining == set(ids(others)) | set(ids(late))


class SecondReplayMidway:
    """The real publisher; before the first copy of its run goes out, a second replay of the
    same selection runs from start to end, as an operator in the console would meanwhile."""

    def __init__(self, publisher, second) -> None:
        self._publisher = publisher
        self._second = second
        self.outcome = None

    def publish(self, *args, **kwargs):
        if self.outcome is None:
            self.outcome = self._second()
        return self._publisher.publish(*args, **kwargs)


def test_two_replays_at_once_publish_each_letter_once(
    two_accounts, amqp_url, publisher, broker, dead_store, parking
):
    a, selected, others = two_accounts
    second = SecondReplayMidway(
        publisher,
        lambda: replay_dead(DeadLetters(dead_store, amqp_url, publisher, batch=10), Selection(connection=a)),
    )
    first = replay_dead(DeadLetters(dead_store, amqp_url, second, batch=10), Selection(connection=a))

    arrived = Counter(m.properties["message_id"] for m in broker.take_all("sync.ar"))
    assert arrived == Counter(ids(selected))  # every selected letter, each exactly once
    # The first run had claimed its first chunk of 10: the second left those to it and moved the rest.
    assert (first.tally.moved, second.outcome.busy) == (10, 10)
    assert (second.outcome.tally.moved, first.busy) == (len(selected) - 10, len(selected) - 10)
    assert first.failed == second.outcome.failed == 0
    assert dead_store.count(LetterQuery(state="replayed")) == len(selected)
    assert sorted(parking.still_dead()) == sorted(ids(others))


def test_a_purge_leaves_alone_the_letters_a_replay_holds(two_accounts, amqp_url, publisher, dead_store):
    a, selected, _ = two_accounts
    DeadLetters(dead_store, amqp_url, publisher).drain()  # the queue's letters into the table
    first_three = [row.letter_id for row in dead_store.find(LetterQuery(connection=a), limit=3)]
    assert len(first_three) == 3
    # A replay on another host holds three of them (its process cannot be checked from here).
    assert sorted(dead_store.claim(first_three, "elsewhere:1:1:replay", seconds=60)) == sorted(first_three)
    tally = purge_dead(DeadLetters(dead_store, amqp_url, publisher), Selection(connection=a)).tally
    assert tally.dropped == len(selected) - 3
    assert [row.letter_id for row in dead_store.find(LetterQuery(connection=a))] == first_three
    assert dead_store.claim(first_three, "here:2:2:replay") == []  # nor can another replay take them


def test_a_claim_whose_lease_ran_out_is_anyones(two_accounts, amqp_url, publisher, dead_store):
    a, _, _ = two_accounts
    DeadLetters(dead_store, amqp_url, publisher).drain()
    ids = [row.letter_id for row in dead_store.find(LetterQuery(connection=a), limit=2)]
    assert len(dead_store.claim(ids, "elsewhere:1:1:replay", seconds=0)) == 2  # runs out at once
    assert sorted(dead_store.claim(ids, "here:2:2:replay")) == sorted(ids)


@pytest.mark.parametrize("from_queue", ["writeback", "writeback.delay.60s"])
def test_a_dead_lettered_payment_replays_to_the_writeback_queue(settings, broker, parking, from_queue):
    # Parked by the writeback worker (directly, or from its delay queue): the payment's routing
    # key names no sync module and its body no synced resource, so only the queue tells.
    target = destination(
        Failure("flexpoint_rejected", ValueError("refused"), transient=False),
        queue=from_queue,
        routing_key=POST_ROUTING_KEY,
        headers=None,
    )
    message_id = str(uuid.uuid4())
    body = json.dumps({"paymentId": "p-1", "accountId": "acct-1"}).encode()
    broker.publish("", DEAD_LETTER_QUEUE_NAME, body, headers=target.headers, message_id=message_id)
    parking.wait_parked(1)

    result = CliRunner().invoke(replay, ["--from", "dead", "--yes"], obj={"settings": settings})

    assert result.exit_code == 0, result.output
    assert "no work queue known" not in result.output
    assert "moved 1," in result.stdout
    moved = broker.take_all(WRITEBACK_QUEUE_NAME)
    assert [m.properties["message_id"] for m in moved] == [message_id]
    assert moved[0].body == body
    assert parking.still_dead() == []
