"""Mail channels: OAuth 2.0 token cache, channel health, and the channel of stored mail and tickets.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 16:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "oauth_tokens",
        sa.Column("key", sa.String(500), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_oauth_tokens")),
    )
    op.create_table(
        "mail_channels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("alerted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("token_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_channels")),
        sa.UniqueConstraint("name", name=op.f("uq_mail_channels_name")),
    )
    # plain ADD COLUMN (no table rebuild): the search triggers on tickets stay as they are
    op.add_column("inbound_emails", sa.Column("channel", sa.String(64), nullable=True))
    op.add_column("tickets", sa.Column("channel", sa.String(64), nullable=True))
    op.add_column("tickets", sa.Column("reply_from", sa.String(254), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("reply_from")
        batch.drop_column("channel")
    with op.batch_alter_table("inbound_emails") as batch:
        batch.drop_column("channel")
    op.drop_table("mail_channels")
    op.drop_table("oauth_tokens")
