"""FlexPoint's error answers turned into the client's typed errors, scrubbed of the token.

The Error body (``{"error": {"code", "message", "details"}}``) is carried whole on the
exception, so a dead-letter reason can say exactly which field of which record broke the
contract. Whatever FlexPoint echoes is scrubbed of our bearer token first: exceptions end up
in logs and dead-letter headers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from clients.flexpoint.errors import (
    FlexPointError,
    FlexPointRateLimited,
    FlexPointRejected,
    FlexPointUnauthorized,
    FlexPointUnavailable,
)
from reliability.retry_after import parse_retry_after

REDACTED = "[REDACTED]"
_ITEM_POINTER = re.compile(r"^/items/(\d+)(/|$)")
_MAX_NAMED_ITEMS = 10


def scrub(value: Any, secret: str) -> Any:
    """``value`` with every occurrence of ``secret`` replaced, inside strings, lists and dicts."""
    if isinstance(value, str):
        return value.replace(secret, REDACTED) if secret else value
    if isinstance(value, Mapping):
        return {scrub(k, secret): scrub(v, secret) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v, secret) for v in value]
    return value


def _error_body(response: requests.Response) -> tuple[str | None, str, Any]:
    """code, message, details from the Error body; a proxy's HTML page still gives a message."""
    try:
        error = response.json()["error"]
        return error.get("code"), str(error.get("message", "")), error.get("details")
    except (ValueError, KeyError, TypeError, AttributeError):
        text = " ".join(response.text.split())[:200]
        return None, text or response.reason or "no body", None


def _named_items(details: Any, items: Sequence[Mapping[str, Any]] | None) -> tuple[str, ...]:
    """The externalIds of the batch items the violations point at (``/items/3/data/...``)."""
    if not items or not isinstance(details, Mapping) or not isinstance(details.get("violations"), list):
        return ()
    named: dict[str, None] = {}
    for violation in details["violations"]:
        pointer = violation.get("pointer") if isinstance(violation, Mapping) else None
        match = _ITEM_POINTER.match(pointer) if isinstance(pointer, str) else None
        if match and int(match.group(1)) < len(items):
            named[str(items[int(match.group(1))].get("externalId"))] = None
    return tuple(named)


def error_from_response(
    response: requests.Response,
    *,
    action: str,
    token: str,
    items: Sequence[Mapping[str, Any]] | None = None,
) -> FlexPointError:
    """The typed error for a non-2xx answer to ``action`` (e.g. "POST invoices batch for acct-1")."""
    status = response.status_code
    code, message, details = scrub(_error_body(response), token)
    fields: dict[str, Any] = {"status": status, "code": code, "details": details}
    said = f"FlexPoint answered {status}{f' {code}' if code else ''} to {action}: {message}"
    if status == 401:
        return FlexPointUnauthorized(
            f"FlexPoint refused our bearer token (401) on {action}: check FLEXPOINT_API_TOKEN ({message})",
            **fields,
        )
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return FlexPointRateLimited(said, retry_after=retry_after, **fields)
    if status >= 500 or status == 408:
        return FlexPointUnavailable(said, **fields)
    named = _named_items(details, items)
    if named:
        shown = ", ".join(named[:_MAX_NAMED_ITEMS]) + (" ..." if len(named) > _MAX_NAMED_ITEMS else "")
        said = f"{said} (externalId {shown})"
    return FlexPointRejected(said, external_ids=named, **fields)
