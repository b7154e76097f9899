"""The Sage Intacct webhook endpoint: a thin view over :class:`ingest.intake.WebhookIntake`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Blueprint, Response, current_app, request
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wsgi import get_content_length

from ingest.errors import WebhookRefused
from ingest.intake import REQUEST_HEADERS

blueprint = Blueprint("webhooks", __name__)

# The headers the checks read, as the WSGI environ names them: read straight from it, a dict
# lookup each, instead of through a header object that rebuilds every name on every read.
_ENVIRON_KEYS = tuple((name, "HTTP_" + name.upper().replace("-", "_")) for name in REQUEST_HEADERS)


@blueprint.post("/webhooks/intacct/<connection_id>")
def receive(connection_id: str):
    """Accept one webhook delivery: 202 when queued, 200 for a duplicate, 4xx/503 refused."""
    environ = request.environ
    parts = current_app.extensions["flexsync.parts"]
    limit = parts.settings.webhook_max_body_bytes
    # Size first, from the declared length, before a byte is read.
    length = get_content_length(environ)
    if length is not None and length > limit:
        raise _too_large(limit)
    mimetype = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise WebhookRefused(
            415, "unsupported_media_type", "Send the body as Content-Type: application/json."
        )
    if length is not None:
        # Exactly the declared bytes, straight from the server's stream (werkzeug's wrapper
        # around it would give the same bytes, at several times the cost).
        raw_body = environ["wsgi.input"].read(length)
    elif "wsgi.input_terminated" in environ:
        # Chunked, and the server ends the stream where the body ends (gunicorn does): one
        # byte more than the limit tells a body that is too large. (werkzeug's stream would
        # cut such a body at the limit without a word, and the cut body would be judged.)
        raw_body = environ["wsgi.input"].read(limit + 1)
        if len(raw_body) > limit:
            raise _too_large(limit)
    else:
        # Chunked, from a server that does not end the stream: werkzeug reads nothing.
        raw_body = request.get_data(cache=False)
    headers = {name: environ[key] for name, key in _ENVIRON_KEYS if key in environ}
    accepted = parts.intake.accept(connection_id, headers, raw_body)
    parts.metrics.answered(accepted.status)  # refusals are counted by the app's error handler
    return _Answer(accepted.body_json(), accepted.status)


class _Answer(Response):
    """An accepted webhook's JSON answer, handed to the WSGI server as it was made.

    werkzeug's Response builds a header object, parses its status, and on the way out checks
    and rewrites every header; for this fixed answer that cost about 77,000 instructions per
    webhook, more than any check but the ledger's. Flask hands the view's response to the
    server unchanged when no after_request hook is registered, and the receiver has none (see
    ``ingest.app``), so this one carries only its status line and body. Refusals are Flask's
    usual responses.
    """

    def __init__(self, body: bytes, status: int) -> None:
        # werkzeug's own __init__ is not called: its state is what this answer goes without.
        self._chunks = [body]
        self._status_line = _STATUS_LINES[status]
        self._headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response(self._status_line, self._headers)
        return self._chunks


_STATUS_LINES = {status: f"{status} {HTTP_STATUS_CODES[status].upper()}" for status in (200, 202)}


def _too_large(limit: int) -> WebhookRefused:
    return WebhookRefused(413, "payload_too_large", f"The body exceeds {limit} bytes.")
