"""Encryption of secrets at rest (passwords, webhook secrets) with rotatable Fernet keys."""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from config.settings import SettingsError, sqlite_path
from observability.logging import register_secret
from reliability.errors import FlexsyncError

if TYPE_CHECKING:
    from config.settings import Settings

DEV_KEY_FILENAME = "dev-secret.key"
# Decrypted tokens remembered per box: a worker reads the same connection's secret for every message.
_DECRYPTED_KEPT = 1024


class SecretDecryptError(FlexsyncError):
    """A stored secret cannot be decrypted with the configured keys."""

    reason = "secret_unreadable"


def generate_key() -> str:
    """Return a new random Fernet key, as ``flexsync keygen`` prints it."""
    return Fernet.generate_key().decode("ascii")


class SecretBox:
    """Encrypts with the first key and decrypts with any of them, so keys can be rotated."""

    def __init__(self, keys: Sequence[str]) -> None:
        if isinstance(keys, str):
            # A bare string would be iterated character by character.
            raise TypeError("SecretBox takes a sequence of keys, not a single string")
        if not keys:
            raise ValueError("SecretBox needs at least one key")
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                # Never echo the key: this message may be printed or logged.
                raise ValueError(f"key {position} is not a Fernet key") from None
        self._primary = fernets[0]
        self._all = MultiFernet(fernets)
        # token -> plaintext: a token decrypts to the same text every time under these keys, and
        # each plaintext is registered with the log redaction (kept there for good) on first use.
        self._decrypted: dict[str, str] = {}
        self._lock = threading.Lock()
        register_secret(*keys)

    def __repr__(self) -> str:
        return "SecretBox(<keys hidden>)"

    @classmethod
    def for_settings(cls, settings: Settings) -> SecretBox:
        """Build the box from ``FLEXSYNC_SECRET_KEY``, or a per-install key outside production.

        The development key lives next to the SQLite database (``./var`` for PostgreSQL), so
        data written in development stays readable across restarts.
        """
        if settings.flexsync_secret_key:
            return cls(settings.flexsync_secret_key)
        if settings.flexsync_env == "production":
            raise SettingsError(
                "FLEXSYNC_SECRET_KEY is required outside development; make one with `flexsync keygen`"
            )
        return cls([_development_key(dev_key_path(settings.database_url))])

    def encrypt(self, plaintext: str) -> str:
        """Encrypt ``plaintext`` under the primary key; the token is URL-safe ASCII."""
        # Whatever passes through the box is a secret: the log redactor learns it here.
        register_secret(plaintext)
        return self._all.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """Decrypt a token made with any key; :class:`SecretDecryptError` if none fits.

        A token decrypted before is answered from memory (Fernet's check and decryption cost a
        worker more than the database read of the connection that carries the token).
        """
        with self._lock:
            known = self._decrypted.get(token)
        if known is not None:
            return known
        try:
            plaintext = self._all.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeEncodeError):
            raise _undecryptable() from None
        register_secret(plaintext)
        with self._lock:
            if len(self._decrypted) >= _DECRYPTED_KEPT:
                self._decrypted.clear()
            self._decrypted[token] = plaintext
        return plaintext

    def rotate(self, token: str) -> str:
        """Re-encrypt a token under the primary key."""
        try:
            return self._all.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeEncodeError):
            raise _undecryptable() from None

    def is_current(self, token: str) -> bool:
        """Whether ``token`` is already encrypted under the primary key (rotation can skip it)."""
        try:
            self._primary.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            return False
        return True


def _undecryptable() -> SecretDecryptError:
    return SecretDecryptError(
        "a stored secret cannot be decrypted: FLEXSYNC_SECRET_KEY is wrong, or the key that "
        "encrypted it was rotated away (keep old keys after the new one until "
        "`rotate_encryption` has run)"
    )


def dev_key_path(database_url: str) -> Path:
    """Where the development key is kept for ``database_url``."""
    database_file = sqlite_path(database_url)
    directory = database_file.parent if database_file is not None else Path("var")
    return directory / DEV_KEY_FILENAME


def _development_key(path: Path) -> str:
    """Read the development key at ``path``, creating it (mode 0600) on first use.

    Several processes may start together: the key is written to a private temporary file and
    hard-linked into place, which fails if another process won, so everyone reads one key.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".dev-secret.")
        try:
            # mkstemp creates the file with mode 0600.
            with os.fdopen(descriptor, "w", encoding="ascii") as handle:
                handle.write(generate_key() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
    key = path.read_text(encoding="ascii").strip()
    try:
        Fernet(key)
    except (ValueError, TypeError):
        raise SettingsError(
            f"the development key file {path} is damaged; delete it (data encrypted with it "
            "becomes unreadable) or set FLEXSYNC_SECRET_KEY"
        ) from None
    return key
