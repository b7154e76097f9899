"""Reconciliation's gap signals and the receivers' heartbeats, which decide when a sweep is due.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reconcile_gaps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("connection_id", sa.String(64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_reconcile_gaps"),
    )
    op.create_index("ix_reconcile_gaps_ended_at", "reconcile_gaps", ["ended_at"])
    op.create_table(
        "receiver_heartbeats",
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("beat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("holder", name="pk_receiver_heartbeats"),
    )
    op.create_index("ix_receiver_heartbeats_beat_at", "receiver_heartbeats", ["beat_at"])


def downgrade() -> None:
    op.drop_index("ix_receiver_heartbeats_beat_at", table_name="receiver_heartbeats")
    op.drop_table("receiver_heartbeats")
    op.drop_index("ix_reconcile_gaps_ended_at", table_name="reconcile_gaps")
    op.drop_table("reconcile_gaps")
