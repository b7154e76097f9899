"""Connections and the webhook idempotency ledger.

Revision ID: 0001
Revises:
Create Date: 2025-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIVE = sa.text("state <> 'disconnected'")


def upgrade() -> None:
    op.create_table(
        "connections",
        sa.Column("connection_id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("company_id", sa.String(64), nullable=False),
        sa.Column("entity_id", sa.String(64), nullable=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("user_password_enc", sa.Text(), nullable=True),
        sa.Column("webhook_secret_enc", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disconnected_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("connection_id", name="pk_connections"),
    )
    # One live connection per account; disconnected rows are history and do not count.
    op.create_index(
        "uq_connections_active_account",
        "connections",
        ["account_id"],
        unique=True,
        postgresql_where=_LIVE,
        sqlite_where=_LIVE,
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("connection_id", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("connection_id", "idempotency_key", name="pk_webhook_deliveries"),
    )
    op.create_index("ix_webhook_deliveries_claimed_at", "webhook_deliveries", ["claimed_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_claimed_at", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("uq_connections_active_account", table_name="connections")
    op.drop_table("connections")
