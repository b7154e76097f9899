"""The FlexPoint Sync API client the sync and provisioning workers write through."""

from clients.flexpoint.client import FlexPointClient
from clients.flexpoint.contract import MAX_BATCH_ITEMS, RESOURCES
from clients.flexpoint.errors import (
    FlexPointCallFailed,
    FlexPointError,
    FlexPointRateLimited,
    FlexPointRejected,
    FlexPointUnauthorized,
    FlexPointUnavailable,
)
from clients.flexpoint.retry import FlexPointRetries

__all__ = [
    "MAX_BATCH_ITEMS",
    "RESOURCES",
    "FlexPointCallFailed",
    "FlexPointClient",
    "FlexPointError",
    "FlexPointRateLimited",
    "FlexPointRejected",
    "FlexPointRetries",
    "FlexPointUnauthorized",
    "FlexPointUnavailable",
]
