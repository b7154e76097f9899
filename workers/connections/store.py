"""Connections (FlexPoint account ↔ Sage Intacct company) with their secrets encrypted at rest."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from sqlalchemy import ColumnElement, Engine, Table, bindparam, case, exists, or_, select, update
from sqlalchemy.exc import IntegrityError

from reliability.errors import FlexsyncError
from store.crypto import SecretBox
from store.db import conflict_insert
from store.models import CONNECTION_STATES, Connection

_ROTATION_BATCH = 500
# SQLAlchemy types __table__ as a FromClause; a declarative model's is always a Table.
_table = cast(Table, Connection.__table__)
_c = _table.c
# Read for every message a worker handles: built once (building costs more than running it).
_GET = select(_table).where(_c.connection_id == bindparam("connection"))


class ConnectionNotFound(FlexsyncError, LookupError):
    """No connection has the given id."""

    reason = "connection_not_found"


class AccountInUseError(FlexsyncError, ValueError):
    """The account already has another live (not disconnected) connection."""

    reason = "account_in_use"


class ConnectionStateError(FlexsyncError, ValueError):
    """The state change is not allowed (a disconnected connection is revived only by ``save``)."""

    reason = "connection_state"


@dataclass(frozen=True)
class ConnectionRecord:
    """A connection as the rest of the service sees it, webhook secrets decrypted."""

    connection_id: str
    account_id: str
    company_id: str
    entity_id: str | None
    user_id: str
    state: str
    # Current secret first; empty once disconnected. Hidden from repr so it never gets logged.
    webhook_secrets: tuple[str, ...] = field(repr=False)
    created_at: datetime
    updated_at: datetime
    # The Sage Intacct tenant_id pinned by the first Sage-signed webhook since the last connect.
    tenant_id: str | None = None

    @property
    def is_active(self) -> bool:
        return self.state != "disconnected"


class ConnectionLookup(Protocol):
    """What reads a connection by id: the store itself, or a cache in front of it."""

    def get(self, connection_id: str) -> ConnectionRecord | None: ...


class RefreshingLookup(ConnectionLookup, Protocol):
    """A cached lookup that says whether an answer was read from the store just now, and can be
    told to read one connection again."""

    def lookup(self, connection_id: str) -> tuple[ConnectionRecord | None, bool]: ...

    def refresh(self, connection_id: str) -> ConnectionRecord | None: ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _check_state(state: str) -> None:
    if state not in CONNECTION_STATES:
        raise ValueError(f"unknown connection state {state!r}; expected one of {CONNECTION_STATES}")


class ConnectionStore:
    """Reads and writes connections; every write is a single atomic statement."""

    def __init__(self, engine: Engine, box: SecretBox, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self._engine = engine
        self._box = box
        self._clock = clock
        self._insert = conflict_insert(engine)

    def get(self, connection_id: str) -> ConnectionRecord | None:
        """The connection with this id, or None."""
        with self._engine.connect() as conn:
            row = conn.execute(_GET, {"connection": connection_id}).first()
        return None if row is None else self._record(row)

    def without_secrets(self) -> ConnectionLookup:
        """A lookup of the same connections that leaves their webhook secrets sealed (its records'
        ``webhook_secrets`` are empty): for a process that never checks a signature, such as the
        write-back, which would otherwise decrypt a secret on every payment only to drop it."""
        return _SealedLookup(self._engine)

    def list(self, state: str | None = None) -> list[ConnectionRecord]:
        """All connections, optionally only those in ``state``, oldest first."""
        query = select(_table).order_by(_c.created_at, _c.connection_id)
        if state is not None:
            _check_state(state)
            query = query.where(_c.state == state)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [self._record(row) for row in rows]

    def save(
        self,
        connection_id: str,
        account_id: str,
        company_id: str,
        entity_id: str | None,
        user_id: str,
        state: str,
        user_password: str | None = None,
        *,
        rotate_webhook_secret: bool = False,
    ) -> ConnectionRecord:
        """Insert or update a connection and return it as stored.

        A new connection, or one that was disconnected, gets a fresh webhook secret; an
        existing one keeps its secret unless ``rotate_webhook_secret``. A ``user_password`` of
        None keeps the stored password. Raises :class:`AccountInUseError` when the account
        already has another live connection.
        """
        _check_state(state)
        if state == "disconnected":
            raise ConnectionStateError("use disconnect() so that the secrets are purged")
        for name, value in (
            ("connection_id", connection_id),
            ("account_id", account_id),
            ("company_id", company_id),
            ("entity_id", entity_id),
            ("user_id", user_id),
        ):
            if value is not None and len(value) > 64:
                raise ValueError(f"{name} is longer than 64 characters")
        now = self._clock()
        # Encrypted up front even if the row keeps its secret: deciding needs the stored row,
        # and one statement keeps concurrent saves of the same connection atomic.
        fresh_secret = self._box.encrypt(secrets.token_urlsafe(32))
        values: dict[str, Any] = {
            "connection_id": connection_id,
            "account_id": account_id,
            "company_id": company_id,
            "entity_id": entity_id,
            "user_id": user_id,
            "state": state,
            "webhook_secret_enc": fresh_secret,
            "user_password_enc": (None if user_password is None else self._box.encrypt(user_password)),
            "created_at": now,
            "updated_at": now,
            "disconnected_at": None,
            "intacct_tenant_id": None,
        }
        statement = self._insert(_table).values(values)
        excluded = statement.excluded
        secret: ColumnElement[Any]
        if rotate_webhook_secret:
            secret = excluded.webhook_secret_enc
        else:
            needs_secret = or_(_c.state == "disconnected", _c.webhook_secret_enc.is_(None))
            secret = case((needs_secret, excluded.webhook_secret_enc), else_=_c.webhook_secret_enc)
        changes: dict[str, Any] = {
            "account_id": excluded.account_id,
            "company_id": excluded.company_id,
            "entity_id": excluded.entity_id,
            "user_id": excluded.user_id,
            "state": excluded.state,
            "webhook_secret_enc": secret,
            "updated_at": excluded.updated_at,
            "disconnected_at": None,
            # A (re)connect may serve another tenant: the next Sage-signed webhook pins it again.
            "intacct_tenant_id": None,
        }
        if user_password is not None:
            changes["user_password_enc"] = excluded.user_password_enc
        upsert = statement.on_conflict_do_update(index_elements=[_c.connection_id], set_=changes)
        try:
            with self._engine.begin() as conn:
                row = conn.execute(upsert.returning(*_c)).one()
        except IntegrityError:
            if self._account_taken(account_id, connection_id):
                raise AccountInUseError(
                    f"account {account_id} already has another live connection; disconnect it first"
                ) from None
            raise
        return self._record(row)

    def live_for_account(self, account_id: str) -> ConnectionRecord | None:
        """The account's live (not disconnected) connection, or None; there is at most one."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(_table).where(_c.account_id == account_id, _c.state != "disconnected").limit(1)
            ).first()
        return None if row is None else self._record(row)

    def set_state(self, connection_id: str, state: str) -> None:
        """Change a live connection's state; ``disconnected`` goes through :meth:`disconnect`."""
        _check_state(state)
        if state == "disconnected":
            if not self.disconnect(connection_id):
                raise ConnectionNotFound(connection_id)
            return
        with self._engine.begin() as conn:
            changed = conn.execute(
                update(_table)
                .where(_c.connection_id == connection_id, _c.state != "disconnected")
                .values(state=state, updated_at=self._clock())
            ).rowcount
        if changed:
            return
        if self.get(connection_id) is None:
            raise ConnectionNotFound(connection_id)
        # Reviving without save() would leave a live connection with no webhook secret.
        raise ConnectionStateError(f"connection {connection_id} is disconnected; save() it again")

    def disconnect(self, connection_id: str) -> bool:
        """Mark the connection disconnected and purge its secrets; False if it does not exist."""
        now = self._clock()
        with self._engine.begin() as conn:
            changed = conn.execute(
                update(_table)
                .where(_c.connection_id == connection_id)
                .values(
                    state="disconnected",
                    # A replayed disconnect keeps the time of the first one.
                    disconnected_at=case((_c.disconnected_at.is_(None), now), else_=_c.disconnected_at),
                    updated_at=now,
                    user_password_enc=None,
                    webhook_secret_enc=None,
                )
            ).rowcount
        return changed > 0

    def pin_tenant(self, connection_id: str, tenant_id: str) -> str | None:
        """Pin ``tenant_id`` on a live connection that has none; return the tenant pinned now.

        One conditional update: of concurrent first deliveries with different tenants exactly
        one pins, and every caller reads back that one. None when the connection is gone or
        disconnected. The connection's ``updated_at`` is left alone (a pin is not a change of
        its settings).
        """
        if not tenant_id or len(tenant_id) > 256:
            raise ValueError("tenant_id must be 1 to 256 characters")
        with self._engine.begin() as conn:
            conn.execute(
                update(_table)
                .where(
                    _c.connection_id == connection_id,
                    _c.intacct_tenant_id.is_(None),
                    _c.state != "disconnected",
                )
                .values(intacct_tenant_id=tenant_id)
            )
            return conn.execute(
                select(_c.intacct_tenant_id).where(
                    _c.connection_id == connection_id, _c.state != "disconnected"
                )
            ).scalar_one_or_none()

    def webhook_secret(self, connection_id: str) -> str | None:
        """The current webhook secret in clear (for the ops command), or None."""
        return self._decrypted(_c.webhook_secret_enc, connection_id)

    def user_password(self, connection_id: str) -> str | None:
        """The stored Intacct user password in clear (XML API fallback only), or None."""
        return self._decrypted(_c.user_password_enc, connection_id)

    def rotate_encryption(self) -> int:
        """Re-encrypt every stored secret under the primary key; return how many were rewritten.

        Values already under the primary key are left alone, so a second run returns 0. Each
        write only applies if the value is unchanged since it was read, so a concurrent save
        is never overwritten with an older secret.
        """
        rewritten = 0
        after = ""
        while True:
            with self._engine.connect() as conn:
                rows = conn.execute(
                    select(_c.connection_id, _c.user_password_enc, _c.webhook_secret_enc)
                    .where(
                        _c.connection_id > after,
                        or_(_c.user_password_enc.is_not(None), _c.webhook_secret_enc.is_not(None)),
                    )
                    .order_by(_c.connection_id)
                    .limit(_ROTATION_BATCH)
                ).all()
            if not rows:
                return rewritten
            after = rows[-1].connection_id
            with self._engine.begin() as conn:
                for row in rows:
                    for column in (_c.user_password_enc, _c.webhook_secret_enc):
                        old = row._mapping[column.name]
                        if old is None or self._box.is_current(old):
                            continue
                        rewritten += conn.execute(
                            update(_table)
                            .where(_c.connection_id == row.connection_id, column == old)
                            .values({column.name: self._box.rotate(old)})
                        ).rowcount

    def _decrypted(self, column: Any, connection_id: str) -> str | None:
        with self._engine.connect() as conn:
            token = conn.execute(select(column).where(_c.connection_id == connection_id)).scalar_one_or_none()
        return None if token is None else self._box.decrypt(token)

    def _account_taken(self, account_id: str, connection_id: str) -> bool:
        with self._engine.connect() as conn:
            return bool(
                conn.execute(
                    select(
                        exists().where(
                            _c.account_id == account_id,
                            _c.connection_id != connection_id,
                            _c.state != "disconnected",
                        )
                    )
                ).scalar()
            )

    def _record(self, row: Any) -> ConnectionRecord:
        secret = row.webhook_secret_enc
        return _record_of(row, () if secret is None else (self._box.decrypt(secret),))


class _SealedLookup:
    """:meth:`ConnectionStore.without_secrets`: reads a connection, decrypts nothing."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, connection_id: str) -> ConnectionRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(_GET, {"connection": connection_id}).first()
        return None if row is None else _record_of(row, ())


def _record_of(row: Any, webhook_secrets: tuple[str, ...]) -> ConnectionRecord:
    return ConnectionRecord(
        connection_id=row.connection_id,
        account_id=row.account_id,
        company_id=row.company_id,
        entity_id=row.entity_id,
        user_id=row.user_id,
        state=row.state,
        webhook_secrets=webhook_secrets,
        created_at=row.created_at,
        updated_at=row.updated_at,
        tenant_id=row.intacct_tenant_id,
    )


def connections_without_secrets(engine: Engine) -> Sequence[ConnectionRecord]:
    """Every connection, oldest first, with no secret decrypted (for views that show states)."""
    with engine.connect() as conn:
        rows = conn.execute(select(_table).order_by(_c.created_at, _c.connection_id)).all()
    return [_record_of(row, ()) for row in rows]
