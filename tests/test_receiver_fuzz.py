"""QUALITY R3 for the receiver: generated bodies and headers never get a 5xx (but R2's 503).

Bodies are often validly signed, so generation reaches the schema checks behind authenticity.
``FLEXSYNC_FUZZ_EXAMPLES`` raises the number of generated requests (default 1,500).
"""

from __future__ import annotations

import json
import os
import time

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ingest.auth import sign_hmac
from schemas.catalog import ACTIONS, OBJECTS
from tests.conftest import COMPANY, trusted_context

pytestmark = pytest.mark.broker

EXAMPLES = int(os.environ.get("FLEXSYNC_FUZZ_EXAMPLES", "1500"))

header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=300
)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)

shaped_bodies = st.fixed_dictionaries(
    {},
    optional={
        "object": st.sampled_from([o.intacct_object for o in OBJECTS])
        | st.sampled_from(["APBILL", "", "ar invoice"])
        | json_values,
        "action": st.sampled_from(sorted(ACTIONS)) | json_values,
        "key": st.text(min_size=1, max_size=70) | st.integers() | json_values,
        "id": st.text(max_size=210) | st.none() | json_values,
        "companyId": st.just(COMPANY) | st.text(max_size=20) | st.none(),
        "occurredAt": st.text(max_size=70) | st.none(),
        "eventId": st.text(max_size=210) | st.none() | json_values,
        "extra": json_values,
    },
)
plausible_bodies = st.fixed_dictionaries(
    {
        "object": st.sampled_from([o.intacct_object for o in OBJECTS]),
        "action": st.sampled_from(sorted(ACTIONS)),
        "key": st.text(st.characters(min_codepoint=0x21, max_codepoint=0x2FF), min_size=1, max_size=64),
    },
    optional={"id": st.text(max_size=40), "occurredAt": st.text(max_size=30), "extra": json_values},
)
raw_bodies = (
    plausible_bodies.map(lambda body: json.dumps(body).encode())
    | shaped_bodies.map(lambda body: json.dumps(body).encode())
    | json_values.map(lambda value: json.dumps(value).encode())
    | st.binary(max_size=300)
)


@st.composite
def deliveries(draw):
    raw = draw(raw_bodies)
    headers = {}
    auth = draw(st.sampled_from(["hmac", "hmac", "hmac", "hmac-bad", "bearer-junk", "none", "both"]))
    if auth in ("hmac", "both"):
        headers["X-FlexPoint-Signature"] = "<sign>"
    if auth == "hmac-bad":
        headers["X-FlexPoint-Signature"] = draw(header_text)
    if auth in ("bearer-junk", "both"):
        headers["Authorization"] = "Bearer " + draw(header_text)
        headers["X-Trusted-Context"] = draw(header_text | st.just(trusted_context(COMPANY)))
    if draw(st.booleans()):
        headers[draw(st.sampled_from(["Idempotency-Key", "X-Idempotency-Key"]))] = draw(header_text)
    # Mostly what Intacct sends, so that generation gets past the early checks.
    if draw(st.integers(0, 9)) < 8:
        content_type = draw(st.sampled_from(["application/json", "application/json; charset=utf-8"]))
    else:
        content_type = draw(st.sampled_from(["text/plain", "application/vnd.api+json"]) | header_text)
    path_id = "<real>" if draw(st.integers(0, 9)) < 8 else draw(st.text(max_size=80))
    return raw, headers, content_type, path_id


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(delivery=deliveries())
def test_generated_deliveries_never_get_a_server_error(receiver, delivery):
    raw, headers, content_type, path_id = delivery
    if headers.get("X-FlexPoint-Signature") == "<sign>":
        headers["X-FlexPoint-Signature"] = sign_hmac(receiver.secret, raw, int(time.time()))
    connection_id = receiver.connection.connection_id if path_id == "<real>" else path_id
    try:
        response = receiver.client.post(
            f"/webhooks/intacct/{connection_id}", data=raw, headers={**headers, "Content-Type": content_type}
        )
    except (ValueError, UnicodeError):
        return  # the test client itself refused to build this request; nothing reached us

    status = response.status_code
    event(f"answered {status}")
    assert status < 500 or (status == 503 and response.headers.get("Retry-After")), response.data
    body = response.get_json(silent=True)
    assert isinstance(body, dict), response.data
    if status >= 400:
        assert set(body) >= {"error"} and {"code", "message"} <= set(body["error"]), body
    else:
        assert body["status"] in {"accepted", "duplicate"} and body["eventId"]
