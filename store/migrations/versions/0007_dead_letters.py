"""Dead letters kept in a table (browsed, replayed and purged there) and the console's audit trail.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("letter_id", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(200), nullable=True),
        sa.Column("connection_id", sa.String(64), nullable=True),
        sa.Column("resource", sa.String(32), nullable=True),
        sa.Column("reason", sa.String(120), nullable=False),
        sa.Column("exception", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=True),
        sa.Column("original_routing_key", sa.String(200), nullable=True),
        sa.Column("original_queue", sa.String(200), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("properties", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_dead_letters"),
        sa.UniqueConstraint("letter_id", name="uq_dead_letters_letter_id"),
    )
    op.create_index("ix_dead_letters_state_seq", "dead_letters", ["state", "seq"])
    op.create_index("ix_dead_letters_state_connection_id", "dead_letters", ["state", "connection_id"])
    op.create_index("ix_dead_letters_state_reason", "dead_letters", ["state", "reason"])
    op.create_index("ix_dead_letters_failed_at", "dead_letters", ["failed_at"])
    op.create_table(
        "console_audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("selection", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_console_audit"),
    )
    op.create_index("ix_console_audit_at", "console_audit", ["at"])


def downgrade() -> None:
    op.drop_index("ix_console_audit_at", table_name="console_audit")
    op.drop_table("console_audit")
    for name in ("failed_at", "state_reason", "state_connection_id", "state_seq"):
        op.drop_index(f"ix_dead_letters_{name}", table_name="dead_letters")
    op.drop_table("dead_letters")
