"""The comparison: which keys a sweep publishes, from Intacct's versions and FlexPoint's records."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas.mappings import mapping_for
from workers.reconcile.compare import IntacctRow, compare, instant, intacct_row, out_of_step

T1 = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
T2 = datetime(2026, 11, 24, 10, 0, 1, tzinfo=UTC)


def held(key: str, version: str, *, deleted: bool = False) -> dict:
    return {"externalId": key, "sourceVersion": version, "deleted": deleted, "data": None if deleted else {}}


@pytest.mark.parametrize(
    ("row", "stored", "expected"),
    [
        (IntacctRow(T1), None, True),  # FlexPoint lacks it
        (IntacctRow(T2), held("1", "2026-11-24T10:00:00Z"), True),  # holds an older version
        (IntacctRow(T1), held("1", "2026-11-24T10:00:00Z"), False),  # in step
        (IntacctRow(T1), held("1", "2026-11-24T11:00:00+01:00"), False),  # same instant, other offset
        (IntacctRow(T1), held("1", "2026-11-24T10:00:05Z"), False),  # holds newer: never go back
        (IntacctRow(T2), held("1", "2026-11-24T10:00:00Z", deleted=True), True),  # revived
        (IntacctRow(T1, skipped=True), None, False),  # a draft is never imported
        (IntacctRow(T1, skipped=True), held("1", "2026-11-24T09:00:00Z", deleted=True), False),
        (IntacctRow(T2, skipped=True), held("1", "2026-11-24T10:00:00Z"), True),  # live, now a draft
        (None, held("1", "2026-11-24T10:00:00Z"), True),  # gone from Intacct, live in FlexPoint
        (None, held("1", "2026-11-24T10:00:00Z", deleted=True), False),  # already a tombstone
        (None, None, False),
    ],
)
def test_out_of_step(row, stored, expected):
    assert out_of_step(row, stored) is expected


def test_a_modified_since_pass_publishes_what_flexpoint_lacks_or_holds_older_in_key_order():
    intacct = {
        "10": IntacctRow(T2),
        "9": IntacctRow(T1),
        "2": IntacctRow(T1),
        "3": IntacctRow(T1, skipped=True),
    }
    stored = [
        held("10", "2026-11-24T10:00:00Z"),
        held("2", "2026-11-24T10:00:00Z"),
        held("77", "2026-01-01T00:00:00Z"),
    ]
    difference = compare(intacct, iter(stored), deletions=False)
    assert difference.updates == [("9", T1), ("10", T2)]
    assert difference.deletes == []  # "77" is not Intacct's to judge in a modified-since pass
    assert intacct == {}  # consumed


def test_a_modified_since_pass_stops_reading_flexpoint_once_every_key_is_matched():
    intacct = {"1": IntacctRow(T1), "2": IntacctRow(T1)}
    read = []

    def pages():
        for key in ("1", "2", "3", "4"):
            read.append(key)
            yield held(key, "2026-11-24T10:00:00Z")

    difference = compare(intacct, pages(), deletions=False)
    assert difference.updates == [] and read == ["1", "2"]
    assert difference.compared == 2


def test_nothing_to_compare_reads_nothing():
    def pages():
        raise AssertionError("FlexPoint must not be read")
        yield

    assert compare({}, pages(), deletions=False).updates == []


def test_a_key_set_pass_finds_deletions_and_what_flexpoint_lacks():
    intacct = {"1": IntacctRow(T1), "2": IntacctRow(T1), "5": IntacctRow(T1, skipped=True)}
    stored = [
        held("1", "2026-11-24T10:00:00Z"),
        held("3", "2026-11-24T10:00:00Z"),  # deleted in Intacct
        held("4", "2026-11-24T10:00:00Z", deleted=True),  # already tombstoned
        held("11", "2026-11-24T10:00:00Z"),  # deleted too; "11" sorts after "3" as a number
    ]
    difference = compare(intacct, iter(stored), deletions=True)
    assert difference.updates == [("2", T1)]
    assert difference.deletes == ["3", "11"]
    assert difference.compared == 4


def test_rows_from_the_query_service_honour_the_mappings_skip_rule():
    skip = mapping_for("invoices").skip
    draft = intacct_row(
        {"key": "1", "audit.modifiedDateTime": "2026-11-24T10:00:00Z", "state": "draft"}, skip
    )
    posted = intacct_row(
        {"key": "2", "audit.modifiedDateTime": "2026-11-24T10:00:01Z", "state": "posted"}, skip
    )
    customer = intacct_row({"key": "3", "audit.modifiedDateTime": "2026-11-24T10:00:00Z"}, None)
    assert draft == IntacctRow(T1, skipped=True)
    assert posted == IntacctRow(T2, skipped=False)
    assert customer == IntacctRow(T1)


def test_a_bad_timestamp_is_a_clear_error():
    with pytest.raises(ValueError, match="RFC 3339"):
        instant("yesterday")
