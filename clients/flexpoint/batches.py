"""Batch bodies and their idempotency keys: one key per write (account, resource, body, write id).

A write is one ``upsert`` call's batch. Its key is a hash of the canonical JSON of what is sent and
of a write id drawn once per call, so the client's own retries of the batch (after a timeout, a
5xx) carry the same key and FlexPoint replays its first answer instead of applying twice; and the
key is never reused for a different body (which FlexPoint would refuse with 409).

The key is not the body's alone: a later write of the very same items is a new write. Intacct's
clock has one-second resolution, so a record can change and change back within one second
(an invoice paid down, then its payment reversed: amount due 100, 40, 100 at one sourceVersion).
FlexPoint applies an equal version with other data than it holds, but a key derived from the
body only would make the third write the first one's key, and FlexPoint would answer it from its
idempotency store with the first write's answer, keeping 40. A write sent again by a new call
(a redelivered event, a recheck) is read from Intacct afresh and applied; FlexPoint's
sourceVersion rule makes that harmless ("unchanged" when nothing changed).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from clients.flexpoint.contract import MAX_BATCH_ITEMS, SOURCE


def canonical_json(value: Any) -> str:
    """One text per JSON value, whatever the key order of the dicts that built it."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def batch_body(connection_id: str, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The BatchRequest for some items of one connection."""
    return {"source": SOURCE, "connectionId": connection_id, "items": list(items)}


def new_write_id() -> str:
    """A fresh id for one write: what keeps a later write of the same body from being a replay."""
    return uuid.uuid4().hex


def idempotency_key(account_id: str, resource: str, body: Mapping[str, Any], write_id: str) -> str:
    """sha256 hex (64 characters, inside the YAML's 8..200) of the account, resource, body and write."""
    return hashlib.sha256(canonical_json([account_id, resource, body, write_id]).encode()).hexdigest()


def chunks(items: Sequence[Mapping[str, Any]], size: int = MAX_BATCH_ITEMS) -> Iterator[Sequence[Any]]:
    """Consecutive slices of at most ``size`` items, in order."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
