"""Sends webhooks signed with a connection's HMAC secret, as a relay would (for trying things out)."""

from __future__ import annotations

import json
import time
import uuid

import requests

from ingest.auth import sign_hmac


def send_signed_webhook(
    base_url: str,
    connection_id: str,
    secret: str,
    event: dict,
    *,
    idempotency_key: str | None = None,
) -> requests.Response:
    """POST one delivery to a receiver; ``occurredAt`` defaults to now."""
    body = json.dumps({"occurredAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **event}).encode()
    return requests.post(
        f"{base_url.rstrip('/')}/webhooks/intacct/{connection_id}",
        data=body,
        timeout=10,
        headers={
            "Content-Type": "application/json",
            "Idempotency-Key": idempotency_key or str(uuid.uuid4()),
            "X-FlexPoint-Signature": sign_hmac(secret, body, int(time.time())),
        },
    )
