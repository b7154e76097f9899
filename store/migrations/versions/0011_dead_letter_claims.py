"""Dead letters are claimed by the replay moving them, so two replays never publish one twice.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable columns only: SQLite adds them in place, without copying the table.
    op.add_column("dead_letters", sa.Column("holder", sa.String(200), nullable=True))
    op.add_column("dead_letters", sa.Column("leased_until", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_column("leased_until")
        batch.drop_column("holder")
