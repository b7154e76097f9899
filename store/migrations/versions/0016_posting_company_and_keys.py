"""Payment postings record the Intacct company they were written in and each write's Idempotency-Key.

Existing rows keep their ``reference`` (``FP-<paymentId>``): a payment already in Intacct, or whose
create's outcome is still unknown, is found only by the reference it was written with. New rows get
the 21-character ``FP-`` + base32 reference (BRIEF.md).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable columns only: SQLite adds them in place, without copying the table.
    op.add_column("payment_postings", sa.Column("company_id", sa.String(200), nullable=True))
    op.add_column("payment_postings", sa.Column("create_key", sa.String(80), nullable=True))
    op.add_column("payment_postings", sa.Column("reverse_key", sa.String(80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payment_postings") as batch:
        batch.drop_column("reverse_key")
        batch.drop_column("create_key")
        batch.drop_column("company_id")
