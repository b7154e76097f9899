"""Event ids, whatever the source, are RFC 4122 version-5 UUIDs in the door's one namespace."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from ingest.door import EVENT_NAMESPACE, event_id
from schemas.catalog import BY_RESOURCE
from workers.connections.store import ConnectionRecord
from workers.reconcile.events import Change, envelope

# Written out here, not imported: the namespace is a contract of the ids already in the archive.
NAMESPACE = uuid.UUID("5b0e7b8e-3c1d-4a57-9a43-8f6f1f9e2a10")


@given(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=100),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200),
)
def test_an_event_id_is_the_standard_uuid5_of_connection_and_key(connection_id, key):
    assert EVENT_NAMESPACE == NAMESPACE
    assert event_id(connection_id, key) == str(uuid.uuid5(NAMESPACE, f"{connection_id}/{key}"))


def test_an_event_id_is_a_version_5_uuid():
    parsed = uuid.UUID(event_id("conn-1", "key-1"))
    assert parsed.version == 5 and parsed.variant == uuid.RFC_4122


def test_the_reconcilers_events_come_through_the_same_door():
    connection = ConnectionRecord(
        connection_id="conn-1",
        account_id="acct-1",
        company_id="COMPANY-1",
        entity_id=None,
        user_id="user",
        state="connected",
        webhook_secrets=(),
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        updated_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    change = Change(key="42", action="update", version=datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    made_id, body = envelope(connection, BY_RESOURCE["invoices"], change, datetime(2026, 3, 1, tzinfo=UTC))
    document = json.loads(body)
    key = "reconcile:invoices:42:update:2026-03-01T12:00:00Z"
    assert document["idempotencyKey"] == key
    assert made_id == document["eventId"] == str(uuid.uuid5(NAMESPACE, f"conn-1/{key}"))
    assert document["authScheme"] == "reconcile"
