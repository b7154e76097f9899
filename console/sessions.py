"""The console's session key and its server-side sessions.

The cookie is signed with a key derived (HKDF-SHA256) from the console token and a random salt
made once per install and kept in the database: a cookie alone is no oracle for guessing the
token offline, every console process of the install agrees on the key, and changing the token
changes the key, which ends every session. Each sign-in also gets a random id whose hash is a
row of ``console_sessions``; signing out deletes the row, so a copied cookie dies with it.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.exc import IntegrityError

from store.db import write_transaction
from store.models import ConsoleKey, ConsoleSession

_SALT = "session-salt"


def _install_salt(engine: Engine) -> bytes:
    """The install's salt, made on first use (two processes racing agree on the first one stored)."""
    with engine.connect() as conn:
        value = conn.execute(select(ConsoleKey.value).where(ConsoleKey.name == _SALT)).scalar()
    if value is not None:
        return bytes(value)
    try:
        with write_transaction(engine) as conn:
            conn.execute(insert(ConsoleKey).values(name=_SALT, value=secrets.token_bytes(32)))
    except IntegrityError:
        pass  # another process stored it first: use theirs
    with engine.connect() as conn:
        return bytes(conn.execute(select(ConsoleKey.value).where(ConsoleKey.name == _SALT)).scalar_one())


def session_key(engine: Engine, token: str) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=_install_salt(engine), info=b"flexsync-console-session"
    )
    return hkdf.derive(token.encode())


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class ConsoleSessions:
    """The live sessions: started at sign-in, looked up on each request, ended at sign-out."""

    def __init__(self, engine: Engine, lifetime: timedelta) -> None:
        self._engine = engine
        self._lifetime = lifetime

    def start(self) -> str:
        """A new session's id (kept in the signed cookie; only its hash is stored)."""
        session_id = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        with write_transaction(self._engine) as conn:
            conn.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < now))
            conn.execute(
                insert(ConsoleSession).values(
                    id_hash=_hash(session_id), started_at=now, expires_at=now + self._lifetime
                )
            )
        return session_id

    def live(self, session_id: object) -> bool:
        if not isinstance(session_id, str) or not session_id:
            return False
        with self._engine.connect() as conn:
            expires = conn.execute(
                select(ConsoleSession.expires_at).where(ConsoleSession.id_hash == _hash(session_id))
            ).scalar()
        return expires is not None and expires > datetime.now(UTC)

    def end(self, session_id: object) -> None:
        if isinstance(session_id, str) and session_id:
            with write_transaction(self._engine) as conn:
                conn.execute(delete(ConsoleSession).where(ConsoleSession.id_hash == _hash(session_id)))
