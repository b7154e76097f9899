"""Tables of our database: connections, webhook ledger, slots, backfill, reconciliation, postings.

The schema itself is created by the Alembic migrations in ``store/migrations``; these models
describe it for queries and must be kept in step with them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Boolean, DateTime, Float, Index, Integer, LargeBinary, MetaData, String, Text, text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

CONNECTION_STATES = ("connecting", "connected", "degraded", "failed", "disconnected")
DELIVERY_STATES = ("pending", "confirmed")
BACKFILL_STATES = ("pending", "running", "completed", "failed", "cancelled")
# A payment's write-back: pending (no create started), creating (intent recorded, outcome not yet
# known), posted, failed (nothing in Intacct), cancelled (withdrawn before posting), reversing, reversed.
POSTING_STATES = ("pending", "creating", "posted", "failed", "cancelled", "reversing", "reversed")

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
    # Sage Intacct's tenant_id, pinned by the first Sage-signed webhook after connect.
    intacct_tenant_id: Mapped[str | None] = mapped_column(String(256))

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


DEAD_LETTER_STATES = ("stored", "replayed", "purged")


class DeadLetterRecord(Base):
    """One message of the ``dead-letter`` queue, kept so operations browse a table, not the queue.

    ``letter_id`` is the letter's identity (workers/deadletters/letters.py): a redelivery of the same message
    after a crash maps to the same row. ``seq`` keeps the order the letters were stored in.
    """

    __tablename__ = "dead_letters"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    letter_id: Mapped[str] = mapped_column(String(64), unique=True)
    message_id: Mapped[str | None] = mapped_column(String(200))
    connection_id: Mapped[str | None] = mapped_column(String(64))
    resource: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(120))
    exception: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int | None] = mapped_column(Integer)
    original_routing_key: Mapped[str | None] = mapped_column(String(200))
    original_queue: Mapped[str | None] = mapped_column(String(200))
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime())
    body: Mapped[bytes] = mapped_column(LargeBinary)
    # JSON: the AMQP headers and the other properties (content type, message id...).
    headers: Mapped[str] = mapped_column(Text)
    properties: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    replayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The replay moving it (store/leases.py): claimed before its copy is published, so a second
    # replay running at the same time leaves it alone; free again when the lease runs out.
    holder: Mapped[str | None] = mapped_column(String(200))
    leased_until: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (
        Index("ix_dead_letters_state_seq", "state", "seq"),
        Index("ix_dead_letters_state_connection_id", "state", "connection_id"),
        Index("ix_dead_letters_state_reason", "state", "reason"),
        Index("ix_dead_letters_failed_at", "failed_at"),
    )


class ArchiveReplayClaim(Base):
    """The claim of an archive replay on its range (issue 30 #6): while one replay holds it
    (store/leases.py), another of the same range (its connection and resource, whatever the
    times) refuses to start, so a console job and a CLI run never both publish it.

    ``range_key`` is ``<connection or *>/<resource or *>``; ``selection`` says what the holder
    replays, for the message the other one shows.
    """

    __tablename__ = "archive_replay_claims"

    range_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    selection: Mapped[str | None] = mapped_column(String(1000))
    holder: Mapped[str | None] = mapped_column(String(200))
    leased_until: Mapped[float | None] = mapped_column(Float)


class ConsoleAudit(Base):
    """One action taken in the operations console: who, what, on which selection, when, outcome."""

    __tablename__ = "console_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    selection: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(Text)


class ConsoleKey(Base):
    """A random value the console keeps for this install (the salt of its session key): made once."""

    __tablename__ = "console_keys"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)


class ConsoleSession(Base):
    """A signed-in console session, by the SHA-256 of its random id: signing out deletes it, so
    a copied cookie stops working with the session it was copied from."""

    __tablename__ = "console_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class ReconcileGap(Base):
    """A time the service knew webhooks may have been lost: the next sweep must start after ``ended_at``.

    ``connection_id`` None means every connection (the receiver was down, the broker away);
    ``kind`` says which signal saw it (``receiver_5xx``, ``receiver_down``, ``broker_away``).
    """

    __tablename__ = "reconcile_gaps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    connection_id: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class ReceiverHeartbeat(Base):
    """The last sign of life of one receiver process: a silence longer than a bound is a gap."""

    __tablename__ = "receiver_heartbeats"

    holder: Mapped[str] = mapped_column(String(200), primary_key=True)
    beat_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class PaymentPosting(Base):
    """One FlexPoint payment's posting into Intacct: the intent, the outcome, and who works on it.

    ``intent_at`` (unix seconds) is when the last create or reverse was about to be sent; while
    the state is ``creating`` or ``reversing`` its outcome is unknown until Intacct is asked, and
    after ``settle_by`` (unix seconds; set by the writer from its own timeouts) that write can no
    longer land, so Intacct not having it means it never happened.
    ``claim_holder``/``claim_until`` lease the row to one worker at a time, like an Intacct slot.
    ``changed_at`` is when the state last changed: the report's ``reportedAt``.
    ``reference`` is the Intacct ``referenceNumber`` the payment is (to be) posted under, kept as
    written so a posting always resolves by its own reference; ``company_id`` the Intacct company it
    was written in; ``create_key``/``reverse_key`` the ``Idempotency-Key`` of the current create and
    reverse, the same for every attempt of one write.
    """

    __tablename__ = "payment_postings"

    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    payment_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    connection_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str] = mapped_column(String(80))
    intacct_key: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    reason: Mapped[str | None] = mapped_column(String(40))
    message: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    intent_at: Mapped[float | None] = mapped_column(Float)
    settle_by: Mapped[float | None] = mapped_column(Float)
    posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reversed_on: Mapped[str | None] = mapped_column(String(10))
    reverse_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reversed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claim_holder: Mapped[str | None] = mapped_column(String(200))
    claim_until: Mapped[float | None] = mapped_column(Float)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    company_id: Mapped[str | None] = mapped_column(String(200))
    create_key: Mapped[str | None] = mapped_column(String(80))
    reverse_key: Mapped[str | None] = mapped_column(String(80))

    __table_args__ = (
        Index("ix_payment_postings_connection_id_state", "connection_id", "state"),
        Index("uq_payment_postings_reference", "account_id", "reference", unique=True),
    )


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


class EventQueueUnavailable(Base):
    """A connection whose Intacct answered 404 to the event queue service: left alone until its
    next connect (a connect moves the connection's ``updated_at`` past ``since``)."""

    __tablename__ = "event_queue_unavailable"

    connection_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    since: Mapped[datetime] = mapped_column(UTCDateTime())
