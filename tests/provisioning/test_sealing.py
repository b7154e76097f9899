"""The connect message's password while it waits in our queues: sealed, removed, opened."""

from __future__ import annotations

import json

import pytest

from store.crypto import SecretBox, generate_key
from workers.connections.sealing import UnreadableSeal, opened, sealed, without_password

CONNECT = {"messageId": "m-1", "connectionId": "c-1", "userId": "ws", "userPassword": "s3cret-pw-19"}


def test_sealed_then_opened_gives_back_the_message_as_sent():
    box = SecretBox([generate_key()])
    body = sealed(json.dumps(CONNECT).encode(), box)
    assert b"s3cret-pw-19" not in body
    document = json.loads(body)
    assert "userPassword" not in document and document["userId"] == "ws"
    assert opened(document, box) == CONNECT
    # Sealing what is already sealed changes nothing (a second trip through the delay queues).
    assert sealed(body, box) == body


def test_a_seal_no_configured_key_opens_is_refused_with_what_to_do():
    body = sealed(json.dumps(CONNECT).encode(), SecretBox([generate_key()]))
    with pytest.raises(UnreadableSeal, match="FLEXSYNC_SECRET_KEY"):
        opened(json.loads(body), SecretBox([generate_key()]))


@pytest.mark.parametrize("seal_first", [False, True])
def test_a_dead_letter_keeps_no_password_clear_or_sealed(seal_first):
    box = SecretBox([generate_key()])
    body = json.dumps(CONNECT).encode()
    if seal_first:
        body = sealed(body, box)
    document = json.loads(without_password(body))
    assert document == {"messageId": "m-1", "connectionId": "c-1", "userId": "ws"}


@pytest.mark.parametrize(
    "body", [b"{not json", b"[1, 2]", json.dumps({"messageId": "m-2", "userPassword": None}).encode()]
)
def test_bodies_without_a_password_pass_unchanged(body):
    box = SecretBox([generate_key()])
    assert sealed(body, box) == body
    assert without_password(body) == body
    assert opened(body, box) == body
