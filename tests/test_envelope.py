"""The event envelope's bytes: written field by field, judged against ``json.dumps`` of the dict."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.messages import ENVELOPE_VERSION, EnvelopeSchema, envelope_body, is_utf8_json
from schemas.catalog import OBJECTS

TEXT = st.text(max_size=40)  # any code point: quotes, backslashes, controls, astral, surrogates
OPTIONAL = st.none() | TEXT
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)
PAYLOADS = st.dictionaries(TEXT, JSON_VALUES, max_size=6)


def _fields(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "connection_id": values["connectionId"],
        "company_id": values["companyId"],
        "event_id": values["eventId"],
        "action": values["action"],
        "key": values["key"],
        "record_id": values["id"],
        "occurred_at": values["occurredAt"],
        "received_at": values["receivedAt"],
        "idempotency_key": values["idempotencyKey"],
        "auth_scheme": values["authScheme"],
    }


ENVELOPE_TEXTS = st.fixed_dictionaries(
    {
        "eventId": TEXT,
        "connectionId": TEXT,
        "companyId": TEXT,
        "action": TEXT,
        "key": TEXT,
        "id": OPTIONAL,
        "occurredAt": OPTIONAL,
        "receivedAt": TEXT,
        "idempotencyKey": TEXT,
        "authScheme": TEXT,
    }
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(OBJECTS), ENVELOPE_TEXTS, PAYLOADS)
def test_the_envelope_is_byte_for_byte_what_json_dumps_writes(synced, values, payload):
    expected = {
        "envelopeVersion": ENVELOPE_VERSION,
        "eventId": values["eventId"],
        "connectionId": values["connectionId"],
        "companyId": values["companyId"],
        "object": synced.intacct_object,
        "module": synced.module,
        "resource": synced.resource,
        "action": values["action"],
        "key": values["key"],
        "id": values["id"],
        "occurredAt": values["occurredAt"],
        "receivedAt": values["receivedAt"],
        "idempotencyKey": values["idempotencyKey"],
        "authScheme": values["authScheme"],
        "payload": payload,
    }
    written = envelope_body(synced, payload=payload, **_fields(values))
    assert written == json.dumps(expected, separators=(",", ":")).encode()


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(OBJECTS), ENVELOPE_TEXTS, PAYLOADS, st.sampled_from([None, 2, "\t"]))
def test_a_raw_payload_reads_back_as_the_parsed_one(synced, values, payload, indent):
    # As a sender might write it: indented, non-ASCII left as UTF-8, keys in any order.
    raw = json.dumps(payload, indent=indent, ensure_ascii=False).encode("utf-8", "surrogatepass")
    parsed = json.loads(raw)
    spliced = envelope_body(synced, payload=parsed, payload_json=raw, **_fields(values))
    encoded = envelope_body(synced, payload=parsed, **_fields(values))
    assert json.loads(spliced) == json.loads(encoded)
    assert json.loads(spliced)["payload"] == parsed


def test_a_body_in_utf16_is_encoded_again_not_spliced():
    payload = {"object": "ARINVOICE", "note": "Müller"}
    raw = json.dumps(payload).encode("utf-16")
    synced = OBJECTS[0]
    values = {
        "eventId": "e-1",
        "connectionId": "c-1",
        "companyId": "CO",
        "action": "update",
        "key": "1",
        "id": None,
        "occurredAt": None,
        "receivedAt": "2026-12-02T00:00:00Z",
        "idempotencyKey": "k-1",
        "authScheme": "jwt",
    }
    written = envelope_body(synced, payload=json.loads(raw), payload_json=raw, **_fields(values))
    assert written.decode("utf-8")  # one encoding throughout
    assert json.loads(written)["payload"] == payload
    assert EnvelopeSchema().load(json.loads(written))["payload"] == payload


# Bytes as bodies start: "{" and then anything (NUL included), byte-order marks, or any bytes.
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")
BODY_STARTS = (
    st.binary(max_size=6).map(lambda rest: b"{" + rest)
    | st.tuples(st.sampled_from(_BOMS), st.binary(max_size=6)).map(b"".join)
    | st.binary(max_size=8)
)


@settings(max_examples=500, deadline=None)
@given(BODY_STARTS)
def test_utf8_is_recognised_as_json_detect_encoding_recognises_it(document):
    assert is_utf8_json(document) is (json.detect_encoding(document) == "utf-8")


def test_a_utf16_object_is_not_taken_for_utf8():
    for encoding in ("utf-16-le", "utf-16-be", "utf-32-le", "utf-16", "utf-8-sig"):
        assert not is_utf8_json('{"a": 1}'.encode(encoding)), encoding
    assert is_utf8_json('{"a": "Müller"}'.encode())
