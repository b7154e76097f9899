"""The dead_letters table on SQLite and PostgreSQL: stored once, filtered, settled once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from workers.deadletters.store import PURGED, REPLAYED, DeadLetterStore, LetterQuery

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def row(n: int, *, connection: str = "c1", reason: str = "mapping_error", hours: float = 0) -> dict:
    return {
        "letter_id": f"{n:012x}",
        "message_id": f"m-{n}",
        "connection_id": connection,
        "resource": "invoices" if n % 2 else "customers",
        "reason": reason,
        "exception": "ValueError: x",
        "attempts": 1,
        "original_routing_key": "ar.invoices.update",
        "original_queue": "sync.ar",
        "failed_at": NOW - timedelta(hours=hours),
        "stored_at": NOW,
        "body": b"{}",
        "headers": "{}",
        "properties": "{}",
        "state": "stored",
    }


def test_a_letter_is_stored_once_and_filters_select_it(engine):
    store = DeadLetterStore(engine)
    rows = [
        row(1),
        row(2, connection="c2"),
        row(3, reason="flexpoint_unavailable:attempts_exhausted", hours=3),
        row(4, hours=5),
    ]
    assert store.add_many(rows) == 4
    assert store.add_many([row(1), row(5)]) == 1  # a redelivery of letter 1 is skipped
    ids = lambda **f: [r.message_id for r in store.find(LetterQuery(**f))]  # noqa: E731
    assert ids() == ["m-1", "m-2", "m-3", "m-4", "m-5"]
    assert ids(connection="c2") == ["m-2"]
    assert ids(reason="flexpoint_unavailable") == ["m-3"]
    assert ids(resource="customers") == ["m-2", "m-4"]
    assert ids(since=NOW - timedelta(hours=4), until=NOW - timedelta(hours=1)) == ["m-3"]
    assert ids(ids=("00000000000",)) == ["m-1", "m-2", "m-3", "m-4", "m-5"][:5]
    counts = store.counts()
    assert counts.total == 5 and counts.by_reason["mapping_error"] == 4
    assert counts.by_resource == {"invoices": 3, "customers": 2}


def test_a_letter_is_settled_once(engine):
    store = DeadLetterStore(engine)
    store.add_many([row(1), row(2)])
    assert store.settle([f"{1:012x}"], REPLAYED, now=NOW) == 1
    assert store.settle([f"{1:012x}", f"{2:012x}"], PURGED, now=NOW) == 1  # 1 is replayed already
    [replayed] = store.find(LetterQuery(state=REPLAYED))
    assert replayed.message_id == "m-1" and replayed.replayed_at == NOW
    assert [r.message_id for r in store.find(LetterQuery(state=PURGED))] == ["m-2"]
    assert store.count(LetterQuery()) == 0


def test_ids_and_reasons_are_matched_as_written_not_as_like_wildcards(engine):
    store = DeadLetterStore(engine)
    rows = [row(n) for n in (1, 2, 3)]
    rows[0]["letter_id"], rows[1]["letter_id"], rows[2]["letter_id"] = "ab_1", "abx2", "a%3"
    rows[0]["reason"] = "flex_point_rejected:http_422"
    rows[1]["reason"] = "flexXpointYrejected:http_422"
    store.add_many(rows)

    def ids(query: LetterQuery) -> set[str]:
        return {letter.letter_id for letter in store.find(query)}

    assert ids(LetterQuery(ids=("ab_",))) == {"ab_1"}
    assert ids(LetterQuery(ids=("a%",))) == {"a%3"}
    assert ids(LetterQuery(ids=("%",))) == set()
    assert ids(LetterQuery(ids=("_",))) == set()
    assert store.count(LetterQuery(ids=("%",))) == 0
    assert ids(LetterQuery(reason="flex_point_rejected")) == {"ab_1"}


def test_a_flexpoint_reason_selects_the_letters_of_either_spelling(engine):
    # Letters parked before the reasons were spelled one way keep flex_point_*: either spelling
    # given to replay --reason selects both, and no other reason.
    store = DeadLetterStore(engine)
    store.add_many(
        [
            row(1, reason="flex_point_unavailable:attempts_exhausted"),
            row(2, reason="flexpoint_unavailable"),
            row(3, reason="flexpoint_rejected"),
            row(4, reason="flex_point_rejected"),
            row(5, reason="flexpoint_unavailable_x"),
        ]
    )

    def ids(reason: str) -> list[str]:
        return [letter.message_id for letter in store.find(LetterQuery(reason=reason))]

    assert ids("flexpoint_unavailable") == ids("flex_point_unavailable") == ["m-1", "m-2"]
    assert ids("flex_point_rejected") == ids("flexpoint_rejected") == ["m-3", "m-4"]
    assert store.count(LetterQuery(reason="flex_point_unavailable")) == 2
    assert ids("mapping_error") == []
