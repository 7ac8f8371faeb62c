"""Who has a ticket open and who is typing a reply (staff collision detection).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 16:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ticket_presence",
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("typing_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_ticket_presence_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_ticket_presence_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("ticket_id", "user_id", name=op.f("pk_ticket_presence")),
    )
    with op.batch_alter_table("ticket_presence", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ticket_presence_seen_at"), ["seen_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ticket_presence", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_presence_seen_at"))
    op.drop_table("ticket_presence")
