"""The receiver's fast body loader gives exactly what the webhook schema gives, for any body."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError, fields

from ingest.body import BodyLoader
from ingest.messages import WebhookBodySchema

_SCHEMA = WebhookBodySchema()
_LOADER = BodyLoader(WebhookBodySchema())

_texts = st.one_of(
    st.text(max_size=70),
    st.text(alphabet="ARINVOCE_x1 ", min_size=0, max_size=210),
    st.sampled_from(["ARINVOICE", "set", " SET ", "Update", "delete", "add", "create", "", "AR-INV", "é"]),
    # Right at the schema's length limits, where an off-by-one would show.
    st.sampled_from([0, 1, 63, 64, 65, 199, 200, 201]).map(lambda n: "A" * n),
)
_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**70), max_value=10**70),
    st.floats(allow_nan=False),
    _texts,
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_names = ["object", "action", "key", "id", "companyId", "occurredAt", "eventId", "docNumber", "extra"]
_bodies = st.dictionaries(st.sampled_from(_names), _values, max_size=len(_names))


def _schema_result(document: dict[str, Any]) -> Any:
    try:
        return ("ok", _SCHEMA.load(dict(document)))
    except ValidationError as exc:
        return ("error", exc.normalized_messages())


def _loader_result(document: dict[str, Any]) -> Any:
    try:
        return ("ok", _LOADER.load(dict(document)))
    except ValidationError as exc:
        return ("error", exc.normalized_messages())


@settings(max_examples=3000, deadline=None)
@given(_bodies)
def test_any_body_loads_as_the_schema_loads_it(document):
    assert _loader_result(document) == _schema_result(document)


@pytest.mark.parametrize(
    "document",
    [
        {"object": "ARINVOICE", "key": "1042"},
        {"object": "ARINVOICE", "action": " SET ", "key": 1042, "id": 7, "companyId": "CO", "extra": [1]},
        {"object": "GL_ACCOUNT", "action": "delete", "key": "9", "occurredAt": None, "eventId": "e-1"},
    ],
)
def test_template_bodies_take_the_fast_path_and_match(document, monkeypatch):
    expected = _SCHEMA.load(dict(document))

    def refuse(*_args, **_kwargs):
        raise AssertionError("marshmallow was called for a body of the template's shape")

    loader = BodyLoader(WebhookBodySchema())
    monkeypatch.setattr(loader._schema, "load", refuse)
    assert loader.load(dict(document)) == expected


def test_a_schema_the_loader_does_not_know_is_left_to_marshmallow():
    class Wider(WebhookBodySchema):
        source = fields.Email()

    loader = BodyLoader(Wider())
    with pytest.raises(ValidationError):
        loader.load({"object": "ARINVOICE", "key": "1", "source": "not an address"})
