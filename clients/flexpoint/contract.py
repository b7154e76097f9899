"""The parts of flexpoint-sync-api.yaml the client checks before it sends anything.

A wrong account, resource or status shape here is a bug in our own code, so it raises
ValueError at once instead of costing a round trip and a dead-lettered message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

SOURCE = "sage-intacct"
MAX_BATCH_ITEMS = 500  # the YAML's BatchRequest.items.maxItems
ACCOUNT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # the YAML's accountId pattern, matched whole
RESOURCES = frozenset(
    {
        "customers",
        "invoices",
        "payments",
        "adjustments",
        "gl-accounts",
        "journal-entries",
        "bank-accounts",
        "deposits",
        "other-receipts",
        "entities",
    }
)
STATES = frozenset({"connecting", "connected", "degraded", "failed", "disconnected"})
REASONS = frozenset(
    {
        "invalid_credentials",
        "sender_not_authorized",
        "missing_permission",
        "company_not_found",
        "intacct_unavailable",
        "disconnected_by_user",
        "internal_error",
        None,
    }
)
STATUS_FIELDS = frozenset(
    {
        "connectionId",
        "state",
        "reason",
        "message",
        "companyId",
        "entityId",
        "missingPermissions",
        "webhookUrl",
        "backfill",
        "reportedAt",
    }
)


def check_account_id(account_id: Any) -> str:
    """The account id if it fits the YAML's pattern; ValueError otherwise."""
    # fullmatch, not a "$" anchor: "$" would let a trailing newline through.
    if not isinstance(account_id, str) or not ACCOUNT_ID.fullmatch(account_id):
        raise ValueError(f"FlexPoint account id {account_id!r} does not match ^[A-Za-z0-9_-]{{1,64}}$")
    return account_id


def check_resource(resource: Any) -> str:
    """The resource if it is one of the YAML's enum; ValueError otherwise."""
    if resource not in RESOURCES:
        raise ValueError(f"unknown FlexPoint resource {resource!r} (known: {', '.join(sorted(RESOURCES))})")
    return resource


def check_status(status: Any) -> None:
    """ValueError unless ``status`` has the ConnectionStatus fields the YAML requires and no others."""
    if not isinstance(status, Mapping):
        raise ValueError("a connection status must be a mapping")
    unknown = sorted(set(status) - STATUS_FIELDS)
    if unknown:
        # The YAML would store a misspelt field silently; FlexPoint's UI would then miss it.
        raise ValueError(f"unknown ConnectionStatus field(s): {', '.join(map(str, unknown))}")
    connection_id = status.get("connectionId")
    if not isinstance(connection_id, str) or not connection_id:
        raise ValueError("ConnectionStatus.connectionId must be a non-empty string")
    if status.get("state") not in STATES:
        raise ValueError(f"ConnectionStatus.state {status.get('state')!r} is not one of {sorted(STATES)}")
    if status.get("reason") not in REASONS:
        raise ValueError(f"ConnectionStatus.reason {status.get('reason')!r} is not a known reason")
