"""Backfill runs resume by themselves after a transient failure: when next, and how many times so far.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("backfill_runs") as batch:
        batch.add_column(sa.Column("resume_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("resumes", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("backfill_runs") as batch:
        batch.drop_column("resumes")
        batch.drop_column("resume_at")
