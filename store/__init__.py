"""The shared persistence room: engines, migrations, the tables' definitions, the one lease's SQL and
the secret box. Each capability keeps the queries of its own tables in its own ``store`` module."""

from store.crypto import SecretBox, SecretDecryptError, generate_key
from store.db import check_ready, create_engine_for, upgrade

__all__ = [
    "SecretBox",
    "SecretDecryptError",
    "check_ready",
    "create_engine_for",
    "generate_key",
    "upgrade",
]
