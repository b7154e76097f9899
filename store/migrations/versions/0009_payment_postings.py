"""Payment postings: each FlexPoint payment's write-back into Intacct, its intent, outcome and claim.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payment_postings",
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("payment_id", sa.String(64), nullable=False),
        sa.Column("connection_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reference", sa.String(80), nullable=False),
        sa.Column("intacct_key", sa.String(64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("reason", sa.String(40), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("intent_at", sa.Float(), nullable=True),
        sa.Column("settle_by", sa.Float(), nullable=True),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reversed_on", sa.String(10), nullable=True),
        sa.Column("reverse_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reversed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claim_holder", sa.String(200), nullable=True),
        sa.Column("claim_until", sa.Float(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "payment_id", name="pk_payment_postings"),
    )
    op.create_index("ix_payment_postings_connection_id_state", "payment_postings", ["connection_id", "state"])
    op.create_index(
        "uq_payment_postings_reference", "payment_postings", ["account_id", "reference"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_payment_postings_reference", table_name="payment_postings")
    op.drop_index("ix_payment_postings_connection_id_state", table_name="payment_postings")
    op.drop_table("payment_postings")
