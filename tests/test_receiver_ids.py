"""The receiver's event ids derived from idempotency keys are RFC 4122 version-5 UUIDs."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from ingest.intake import _EVENT_NAMESPACE, event_uuid


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300))
def test_an_event_id_is_the_standard_uuid5_of_its_name(name):
    assert event_uuid(name) == str(uuid.uuid5(_EVENT_NAMESPACE, name))


def test_an_event_id_is_a_version_5_uuid():
    parsed = uuid.UUID(event_uuid("conn-1/key-1"))
    assert parsed.version == 5 and parsed.variant == uuid.RFC_4122
