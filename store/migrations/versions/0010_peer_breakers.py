"""Circuit breakers per peer (FlexPoint; each connection's Intacct company), shared by every process.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "peer_breakers",
        sa.Column("peer", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("openings", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("opened_at", sa.Float(), nullable=True),
        sa.Column("probe_at", sa.Float(), nullable=True),
        sa.Column("probe_holder", sa.String(200), nullable=True),
        sa.Column("probe_until", sa.Float(), nullable=True),
        sa.Column("last_reason", sa.String(200), nullable=True),
        sa.Column("probes", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("peer", name="pk_peer_breakers"),
    )


def downgrade() -> None:
    op.drop_table("peer_breakers")
