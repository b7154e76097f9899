"""Archive replays claim their range, as dead-letter replays claim each letter (issue 30 #6).

One row per range an archive replay has run on (``<connection or *>/<resource or *>``), leased
through store/leases.py while a replay moves it: a second replay of the same range started
meanwhile (a console job and a CLI run at once) refuses instead of publishing it again.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "archive_replay_claims",
        sa.Column("range_key", sa.String(200), primary_key=True),
        sa.Column("selection", sa.String(1000), nullable=True),
        sa.Column("holder", sa.String(200), nullable=True),
        sa.Column("leased_until", sa.Float(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("archive_replay_claims")
