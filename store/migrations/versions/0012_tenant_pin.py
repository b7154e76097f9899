"""A connection pins the Sage Intacct tenant_id of its first Sage-signed webhook (issue 29).

Sage signs webhooks with the application's secret, shared by every customer, so the signature
says the delivery came from Sage, not for which company; the pinned tenant says that.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: SQLite adds it in place; every connection starts unpinned.
    op.add_column("connections", sa.Column("intacct_tenant_id", sa.String(256), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.drop_column("intacct_tenant_id")
