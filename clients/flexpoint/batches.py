"""Batch bodies and their idempotency keys: one key per (account, resource, body).

The key is a hash of the canonical JSON of what is sent, so a retry of the same batch (by the
client, or by a worker's delay queue after a crash) carries the same key and FlexPoint replays
its first answer instead of applying twice; any change to the body changes the key, so a key is
never reused for a different body (which FlexPoint would refuse with 409).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from clients.flexpoint.contract import MAX_BATCH_ITEMS, SOURCE


def canonical_json(value: Any) -> str:
    """One text per JSON value, whatever the key order of the dicts that built it."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def batch_body(connection_id: str, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The BatchRequest for some items of one connection."""
    return {"source": SOURCE, "connectionId": connection_id, "items": list(items)}


def idempotency_key(account_id: str, resource: str, body: Mapping[str, Any]) -> str:
    """sha256 hex (64 characters, inside the YAML's 8..200) of the account, resource and body."""
    return hashlib.sha256(canonical_json([account_id, resource, body]).encode()).hexdigest()


def chunks(items: Sequence[Mapping[str, Any]], size: int = MAX_BATCH_ITEMS) -> Iterator[Sequence[Any]]:
    """Consecutive slices of at most ``size`` items, in order."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
