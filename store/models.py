"""Tables of our database: connections, webhook ledger, slots, backfill and reconciliation state.

The schema itself is created by the Alembic migrations in ``store/migrations``; these models
describe it for queries and must be kept in step with them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Boolean, DateTime, Float, Index, Integer, MetaData, String, Text, text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

CONNECTION_STATES = ("connecting", "connected", "degraded", "failed", "disconnected")
DELIVERY_STATES = ("pending", "confirmed")
BACKFILL_STATES = ("pending", "running", "completed", "failed", "cancelled")

# Stable constraint names, so later migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    PostgreSQL keeps ``timestamptz``; SQLite has no time zones and would hand back naive
    values, so values are stored as UTC and the zone is put back when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; the store only accepts timezone-aware values")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Connection(Base):
    """One FlexPoint account's link to one Sage Intacct company; secrets are stored encrypted."""

    __tablename__ = "connections"

    connection_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64))
    company_id: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    user_password_enc: Mapped[str | None] = mapped_column(Text)
    webhook_secret_enc: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    disconnected_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        # One account has at most one live connection; a disconnected one stays as history and
        # must not block the account from connecting again under a new connection id.
        Index(
            "uq_connections_active_account",
            "account_id",
            unique=True,
            postgresql_where=text("state <> 'disconnected'"),
            sqlite_where=text("state <> 'disconnected'"),
        ),
    )


class WebhookDelivery(Base):
    """One accepted (or being accepted) webhook delivery, keyed by its idempotency key."""

    __tablename__ = "webhook_deliveries"

    connection_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16))
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class IntacctSlot(Base):
    """One slot of a company's Intacct concurrency cap, shared by every worker process and host.

    A free slot has no holder; a taken one names its holder and the time (unix seconds) its
    lease ends, after which anyone may take it (a holder killed mid-request frees it that way).
    """

    __tablename__ = "intacct_slots"

    company_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    holder: Mapped[str | None] = mapped_column(String(200))
    leased_until: Mapped[float | None] = mapped_column(Float)


class BackfillRun(Base):
    """The historical import of one connection: pending, running, completed, failed or cancelled.

    A running import is leased like an Intacct slot: ``holder`` names the process and thread
    running it and ``leased_until`` (unix seconds) when the lease ends unless renewed; a run
    whose lease ran out (its holder crashed) is taken over by the next worker that looks.
    """

    __tablename__ = "backfill_runs"

    connection_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    holder: Mapped[str | None] = mapped_column(String(200))
    leased_until: Mapped[float | None] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer)
    # A run failed on a transient error is taken up again at ``resume_at`` (unix seconds);
    # ``resumes`` counts those automatic resumptions since the run was last requested.
    resume_at: Mapped[float | None] = mapped_column(Float)
    resumes: Mapped[int] = mapped_column(Integer, server_default="0")

    __table_args__ = (Index("ix_backfill_runs_state", "state"),)


class BackfillCheckpoint(Base):
    """How far the import of one resource has come: every key up to ``after_key`` is in FlexPoint.

    ``imported`` counts the records read so far, of which ``skipped`` were not imported (drafts)
    and ``unmappable`` could not be mapped (logged, not fatal).
    """

    __tablename__ = "backfill_checkpoints"

    connection_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource: Mapped[str] = mapped_column(String(32), primary_key=True)
    after_key: Mapped[str | None] = mapped_column(String(64))
    imported: Mapped[int] = mapped_column(Integer)
    skipped: Mapped[int] = mapped_column(Integer)
    unmappable: Mapped[int] = mapped_column(Integer)
    total: Mapped[int | None] = mapped_column(Integer)
    done: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ReconcileWatermark(Base):
    """How far reconciliation has swept one resource of one connection, and who sweeps it now.

    ``modified_since``: every change before it is confirmed in the broker (minus the overlap
    the sweep re-reads). The lease (holder, unix-seconds end) keeps two reconcile processes
    from sweeping the same resource of a connection at once; a dead holder's lease runs out.
    """

    __tablename__ = "reconcile_watermarks"

    connection_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource: Mapped[str] = mapped_column(String(32), primary_key=True)
    modified_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    swept_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    keyset_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_holder: Mapped[str | None] = mapped_column(String(200))
    leased_until: Mapped[float | None] = mapped_column(Float)


class ProvisioningMark(Base):
    """The newest connect or disconnect request taken on for a connection (older ones are stale)."""

    __tablename__ = "provisioning_marks"

    connection_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(16))
    message_id: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PeerBreaker(Base):
    """The circuit breaker of one peer (FlexPoint, or one connection's Intacct company), shared by every process.

    ``failures`` counts consecutive transient failures while closed; once open, nobody calls the
    peer until ``probe_at`` (unix seconds), when one process at a time (``probe_holder`` until
    ``probe_until``) may try it; ``openings`` counts the failed probes in a row, which spaces the
    next ones further apart.
    """

    __tablename__ = "peer_breakers"

    peer: Mapped[str] = mapped_column(String(200), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    openings: Mapped[int] = mapped_column(Integer, default=0)
    opened_at: Mapped[float | None] = mapped_column(Float)
    probe_at: Mapped[float | None] = mapped_column(Float)
    probe_holder: Mapped[str | None] = mapped_column(String(200))
    probe_until: Mapped[float | None] = mapped_column(Float)
    last_reason: Mapped[str | None] = mapped_column(String(200))
    probes: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[float] = mapped_column(Float)
