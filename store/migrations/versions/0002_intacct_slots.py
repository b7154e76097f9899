"""Slots of the per-company Intacct concurrency cap.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "intacct_slots",
        sa.Column("company_id", sa.String(64), nullable=False),
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("holder", sa.String(200), nullable=True),
        sa.Column("leased_until", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("company_id", "slot", name="pk_intacct_slots"),
    )


def downgrade() -> None:
    op.drop_table("intacct_slots")
