"""Persistence: connections with encrypted secrets, the webhook ledger, engines and migrations."""

from store.connections import (
    AccountInUseError,
    CachedConnectionLookup,
    ConnectionNotFound,
    ConnectionRecord,
    ConnectionStateError,
    ConnectionStore,
)
from store.crypto import SecretBox, SecretDecryptError, generate_key
from store.db import check_ready, create_engine_for, upgrade
from store.deliveries import BatchRecorder, DeliveryLedger
from store.models import CONNECTION_STATES

__all__ = [
    "CONNECTION_STATES",
    "AccountInUseError",
    "BatchRecorder",
    "CachedConnectionLookup",
    "ConnectionNotFound",
    "ConnectionRecord",
    "ConnectionStateError",
    "ConnectionStore",
    "DeliveryLedger",
    "SecretBox",
    "SecretDecryptError",
    "check_ready",
    "create_engine_for",
    "generate_key",
    "upgrade",
]
