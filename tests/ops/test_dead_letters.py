"""Browsing dead letters: filters, ids, and the stored letters left exactly as they were."""

from __future__ import annotations

import json
import uuid

import pytest
from click.testing import CliRunner

from broker.topology import DEAD_LETTER_QUEUE_NAME
from tests.conftest import wait_until
from workers.deadletters.commands import dead
from workers.deadletters.operations import DeadLetters, browse
from workers.deadletters.selection import Selection
from workers.deadletters.store import LetterQuery

pytestmark = pytest.mark.broker


@pytest.fixture
def mixed(parking, hours_ago):
    """Twelve dead letters of two connections, three resources, two reasons, three ages."""
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    plan = [
        (first, "invoices", "mapping_error", 5),
        (first, "invoices", "flexpoint_unavailable", 4),
        (first, "customers", "mapping_error", 3),
        (second, "invoices", "mapping_error", 2),
        (second, "deposits", "mapping_error", 1),
        (second, "customers", "flexpoint_unavailable", 0.5),
    ] * 2
    parked = [
        parking.park(
            connection,
            resource,
            key=str(n),
            reason=reason,
            transient=reason == "flexpoint_unavailable",
            failed_at=hours_ago(age),
        )
        for n, (connection, resource, reason, age) in enumerate(plan)
    ]
    parking.wait_parked(len(parked))
    return first, second, parked


def listed(sweeper, **filters) -> list[str]:
    return [letter.message_id for letter in browse(sweeper, Selection(**filters)).letters]


def test_each_filter_selects_exactly_its_dead_letters(mixed, sweeper, hours_ago):
    first, second, parked = mixed
    ids = [p.message_id for p in parked]

    def where(predicate) -> list[str]:
        return [p.message_id for p in parked if predicate(p)]

    assert listed(sweeper) == ids
    assert listed(sweeper, connection=first) == where(lambda p: p.envelope["connectionId"] == first)
    assert listed(sweeper, resource="customers") == where(lambda p: p.envelope["resource"] == "customers")
    assert listed(sweeper, reason="mapping_error") == where(lambda p: p.reason == "mapping_error")
    # A transient failure that ran out of attempts is found by its base reason too.
    assert listed(sweeper, reason="flexpoint_unavailable") == where(
        lambda p: p.reason.startswith("flexpoint")
    )
    # The sync's old spelling of that reason (letters parked before it changed keep it) works too.
    assert listed(sweeper, reason="flex_point_unavailable") == listed(sweeper, reason="flexpoint_unavailable")
    assert listed(sweeper, since=hours_ago(3.5), until=hours_ago(1.5)) == [ids[2], ids[3], ids[8], ids[9]]
    assert listed(sweeper, connection=second, resource="invoices") == [ids[3], ids[9]]
    assert listed(sweeper, limit=3) == ids[:3]


def test_browsing_leaves_every_dead_letter_stored_in_order(mixed, amqp_url, publisher, broker, dead_store):
    _, _, parked = mixed
    for batch in (2000, 5, 1):
        browse(DeadLetters(dead_store, amqp_url, publisher, batch=batch), Selection(limit=2))
    # Every letter moved from the queue to the table, each once, in the order it was parked.
    assert broker.depth(DEAD_LETTER_QUEUE_NAME) == 0
    messages = dead_store.find(LetterQuery())
    assert [m.message_id for m in messages] == [p.message_id for p in parked]
    # Stored on first delivery: no redelivery was counted toward a delivery limit.
    assert {json.loads(m.headers).get("x-delivery-count", 0) for m in messages} == {0}
    assert [json.loads(m.headers)["x-flexsync-reason"] for m in messages] == [p.reason for p in parked]


def test_ids_are_stable_across_browses(mixed, sweeper):
    before = [letter.id for letter in browse(sweeper, Selection()).letters]
    after = [letter.id for letter in browse(sweeper, Selection()).letters]
    assert before == after and len(set(before)) == len(before)


def test_a_dead_letter_without_a_message_id_keeps_its_id_across_browses(sweeper, broker, parking):
    # FlexPoint's connection messages may come without the AMQP message-id property.
    headers = {"x-flexsync-reason": "malformed_message", "x-flexsync-original-queue": "provisioning"}
    for n in range(3):
        broker.publish("", DEAD_LETTER_QUEUE_NAME, json.dumps({"n": n}).encode(), headers=headers)
    wait_until(lambda: parking.dead_count() == 3, message="three dead letters")
    first = [letter.id for letter in browse(sweeper, Selection()).letters]
    second = browse(sweeper, Selection())
    assert [letter.id for letter in second.letters] == first and len(set(first)) == 3
    assert second.tally.duplicates == 0


def test_dead_list_and_show_print_what_failed_and_why(mixed, settings, broker, parking):
    first, _, parked = mixed
    runner = CliRunner()
    result = runner.invoke(
        dead, ["list", "--connection", first, "--resource", "invoices", "--json"], obj={"settings": settings}
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    expected = [
        p for p in parked if p.envelope["connectionId"] == first and p.envelope["resource"] == "invoices"
    ]
    assert [row["messageId"] for row in rows] == [p.message_id for p in expected]
    row = rows[0]
    assert row["reason"] == "mapping_error" and row["attempts"] == 1
    assert row["originalRoutingKey"] == "ar.invoices.update" and row["originalQueue"] == "sync.ar"
    assert row["exception"].startswith("ValueError: cannot map invoices")
    assert row["envelope"]["eventId"] == expected[0].message_id

    shown = runner.invoke(dead, ["show", row["id"]], obj={"settings": settings})
    assert shown.exit_code == 0, shown.output
    for text in (
        row["id"],
        "mapping_error",
        "ValueError: cannot map invoices",
        "ar.invoices.update",
        "sync.ar",
        expected[0].message_id,
        '"resource": "invoices"',
    ):
        assert text in shown.stdout
    assert parking.dead_count() == len(parked)


def test_show_of_an_unknown_id_says_how_to_find_one(mixed, settings):
    result = CliRunner().invoke(dead, ["show", "ffffffffffff"], obj={"settings": settings})
    assert result.exit_code == 1
    assert "no dead letter has the id ffffffffffff" in result.output and "flexsync dead list" in result.output


def test_an_unreachable_broker_is_named_with_the_setting_that_fixes_it(settings):
    broken = settings.with_overrides(amqp_url="amqp://guest:secret@127.0.0.1:1/%2F")
    result = CliRunner().invoke(dead, ["list"], obj={"settings": broken})
    assert result.exit_code == 1
    assert "amqp://guest:***@127.0.0.1:1/%2F" in result.output and "AMQP_URL" in result.output
    assert "secret" not in result.output


def test_a_bad_time_is_refused_with_the_forms_it_takes(settings):
    result = CliRunner().invoke(dead, ["list", "--since", "yesterday"], obj={"settings": settings})
    assert result.exit_code == 1 and "ISO-8601" in result.output and "30m" in result.output
