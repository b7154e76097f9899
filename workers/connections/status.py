"""The ConnectionStatus bodies the provisioning worker reports to FlexPoint (flexpoint-sync-api.yaml)."""

from __future__ import annotations

from typing import Any

from workers.connections.reasons import ConnectFailure


def webhook_url(public_base_url: str, connection_id: str) -> str:
    """The URL the customer pastes into each Sage Intacct Platform Trigger."""
    return f"{public_base_url.rstrip('/')}/webhooks/intacct/{connection_id}"


def _base(message: dict[str, Any], state: str) -> dict[str, Any]:
    status: dict[str, Any] = {"connectionId": message["connectionId"], "state": state}
    if message.get("companyId"):
        status["companyId"] = message["companyId"]
        status["entityId"] = message.get("entityId")
    return status


def connecting(message: dict[str, Any], note: str | None = None) -> dict[str, Any]:
    """The checks have started; ``note`` says what holds them up meanwhile (Intacct not answering)."""
    return {**_base(message, "connecting"), "reason": None, "message": note}


def connected(message: dict[str, Any], url: str) -> dict[str, Any]:
    """Every check passed; the webhook URL is what the admin puts in the triggers."""
    return {
        **_base(message, "connected"),
        "reason": None,
        "message": None,
        "missingPermissions": [],
        "webhookUrl": url,
    }


def failed(message: dict[str, Any], verdict: ConnectFailure) -> dict[str, Any]:
    """A check failed: why, what to fix, and every missing permission area."""
    return {
        **_base(message, "failed"),
        "reason": verdict.reason,
        "message": verdict.message,
        "missingPermissions": list(verdict.missing_permissions),
        "webhookUrl": None,
    }


def disconnected(message: dict[str, Any], company_id: str | None) -> dict[str, Any]:
    """The connection is gone: syncing stopped and its secrets are deleted."""
    status = {
        "connectionId": message["connectionId"],
        "state": "disconnected",
        "reason": "disconnected_by_user",
        "message": "Sage Intacct is disconnected: FlexPoint no longer receives changes from it.",
        "webhookUrl": None,
    }
    if company_id:
        status["companyId"] = company_id
    return status
