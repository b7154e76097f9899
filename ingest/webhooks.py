"""The Sage Intacct webhook endpoint: a thin view over :class:`ingest.intake.WebhookIntake`."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from ingest.errors import WebhookRefused

blueprint = Blueprint("webhooks", __name__)


@blueprint.post("/webhooks/intacct/<connection_id>")
def receive(connection_id: str):
    """Accept one webhook delivery: 202 when queued, 200 for a duplicate, 4xx/503 refused."""
    settings = current_app.extensions["flexsync.settings"]
    intake = current_app.extensions["flexsync.intake"]
    # Size first, from the declared length, before a byte is read; Flask's
    # MAX_CONTENT_LENGTH also stops a body that lies about its length or is chunked.
    if request.content_length is not None and request.content_length > settings.webhook_max_body_bytes:
        raise WebhookRefused(
            413, "payload_too_large", f"The body exceeds {settings.webhook_max_body_bytes} bytes."
        )
    if request.mimetype != "application/json" and not request.mimetype.endswith("+json"):
        raise WebhookRefused(
            415, "unsupported_media_type", "Send the body as Content-Type: application/json."
        )
    raw_body = request.get_data(cache=False)
    accepted = intake.accept(connection_id, request.headers, raw_body)
    return Response(accepted.body_json(), accepted.status, mimetype="application/json")
