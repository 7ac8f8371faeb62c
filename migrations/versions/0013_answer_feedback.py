"""Centres' answers to "Did this answer your question?", and the public pages' rate limit.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 16:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add answer_feedback, public_rate_limits and tickets.answer_rejected_at."""
    op.create_table(
        "answer_feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("solved", sa.Boolean(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name="fk_answer_feedback_ticket_id_tickets",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name="fk_answer_feedback_message_id_messages",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_answer_feedback"),
        sa.UniqueConstraint("message_id", name="uq_answer_feedback_message_id"),
    )
    op.create_index("ix_answer_feedback_ticket_id", "answer_feedback", ["ticket_id"])
    op.create_table(
        "public_rate_limits",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("window", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_public_rate_limits"),
    )
    op.add_column("tickets", sa.Column("answer_rejected_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    """Drop what upgrade added."""
    op.drop_column("tickets", "answer_rejected_at")  # SQLite 3.35+ drops it in place
    op.drop_table("public_rate_limits")
    op.drop_index("ix_answer_feedback_ticket_id", table_name="answer_feedback")
    op.drop_table("answer_feedback")
