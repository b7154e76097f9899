"""The newest request per connection wins, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from workers.connections.marks import ProvisioningMarks

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def test_older_requests_are_stale_and_the_same_one_is_taken_again(engine):
    marks = ProvisioningMarks(engine)
    assert marks.claim("c-1", T0, "connect", "m-1")
    assert marks.claim("c-1", T0, "connect", "m-1"), "a retry of the same message goes on"
    assert marks.claim("c-1", T0 + timedelta(seconds=5), "disconnect", "m-2")
    assert not marks.claim("c-1", T0, "connect", "m-1"), "the old connect after the disconnect"
    assert not marks.claim("c-1", T0 + timedelta(seconds=5), "connect", "m-3"), "a tie goes to disconnect"
    assert marks.claim("c-2", T0, "connect", "m-4"), "connections are independent"
    current = marks.current("c-1")
    assert (current.kind, current.message_id, current.requested_at) == (
        "disconnect",
        "m-2",
        T0 + timedelta(seconds=5),
    )
    assert marks.current("c-3") is None
