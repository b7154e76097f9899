"""The user password of a connect message, while the message waits in our queues.

FlexPoint's connect message may carry ``userPassword`` in clear. When the provisioning worker
sends the message on, it does not repeat that: in a delay queue (a retry, stored by RabbitMQ
for up to minutes) the password travels sealed with the service's encryption key, as
``userPasswordSealed``, and is opened again when the message comes back; in the dead-letter queue
(kept, listed and shown to operators) it is removed altogether
(:func:`workers.connections.messages.without_password`, which the dead-letter storer applies too,
to what RabbitMQ dead-letters on its own).
"""

from __future__ import annotations

import json
from typing import Any

from reliability.errors import Permanent
from store.crypto import SecretBox, SecretDecryptError
from workers.connections.messages import PASSWORD_FIELD, SEALED_FIELD, without_password
from workers.runtime.failures import Destination, Failure
from workers.runtime.middleware import Middleware, Rejected


class UnreadableSeal(Permanent, ValueError):
    """A sealed password that none of the configured keys opens."""

    reason = "malformed_message"


def _document(body: Any) -> dict[str, Any] | None:
    if isinstance(body, dict):
        return body
    try:
        document = json.loads(body)
    except (TypeError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def _raw(body: Any) -> bytes:
    return body if isinstance(body, bytes) else str(body).encode()


def _dumped(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def sealed(body: Any, box: SecretBox) -> bytes:
    """The message body with its password sealed (for a delay queue); other bodies unchanged."""
    document = _document(body)
    if document is None or document.get(PASSWORD_FIELD) in (None, ""):
        return _raw(body)
    document = dict(document)
    document[SEALED_FIELD] = box.encrypt(document.pop(PASSWORD_FIELD))
    return _dumped(document)


def opened(body: Any, box: SecretBox) -> Any:
    """The message as FlexPoint sent it: a sealed password opened; any other body unchanged.

    Raises :class:`UnreadableSeal` when no configured key opens it (the key was removed).
    """
    document = _document(body)
    if document is None or SEALED_FIELD not in document:
        return body
    document = dict(document)
    try:
        document[PASSWORD_FIELD] = box.decrypt(str(document.pop(SEALED_FIELD)))
    except SecretDecryptError:
        raise UnreadableSeal(
            "the password sealed for the retry cannot be decrypted with the configured "
            "FLEXSYNC_SECRET_KEY (was a key removed?); publish the connect again"
        ) from None
    return document


class PasswordSeal(Middleware):
    """The worker runtime's step for the password: opened on receipt, sealed or removed on the way out."""

    def __init__(self, box: SecretBox) -> None:
        self._box = box

    def before_receive(self, message: Any, body: Any) -> Any:
        try:
            return opened(body, self._box)  # back from a delay queue: the password as FlexPoint sent it
        except UnreadableSeal as exc:
            raise Rejected(Failure("malformed_message", exc, transient=False)) from None

    def before_route(self, message: Any, target: Destination, body: Any) -> Any:
        # Never the password in clear: dead letters are kept and shown; delay queues are on disk.
        return without_password(body) if target.dead else sealed(body, self._box)
