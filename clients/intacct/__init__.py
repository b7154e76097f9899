"""The Sage Intacct REST client: tokens per connection, the per-company cap, reads with retries."""

from clients.intacct.client import AREA_PROBES, IntacctClient, Page, create_client
from clients.intacct.errors import (
    AREAS,
    CompanyBusy,
    IntacctError,
    IntacctRejected,
    IntacctUnavailable,
    PermissionDenied,
    RateLimited,
    RecordNotFound,
    TokenInvalid,
    TokenRefused,
)
from clients.intacct.tokens import IntacctConnection, TokenProvider
from clients.intacct.transport import ENTITY_HEADER, IntacctRetries, build_session

__all__ = [
    "AREAS",
    "AREA_PROBES",
    "ENTITY_HEADER",
    "CompanyBusy",
    "IntacctClient",
    "IntacctConnection",
    "IntacctError",
    "IntacctRejected",
    "IntacctRetries",
    "IntacctUnavailable",
    "Page",
    "PermissionDenied",
    "RateLimited",
    "RecordNotFound",
    "TokenInvalid",
    "TokenProvider",
    "TokenRefused",
    "build_session",
    "create_client",
]
