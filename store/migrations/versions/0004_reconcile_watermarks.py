"""Reconciliation watermarks: how far each connection's resources have been swept, and leases.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reconcile_watermarks",
        sa.Column("connection_id", sa.String(64), nullable=False),
        sa.Column("resource", sa.String(32), nullable=False),
        sa.Column("modified_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("swept_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("keyset_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_holder", sa.String(200), nullable=True),
        sa.Column("leased_until", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("connection_id", "resource", name="pk_reconcile_watermarks"),
    )


def downgrade() -> None:
    op.drop_table("reconcile_watermarks")
