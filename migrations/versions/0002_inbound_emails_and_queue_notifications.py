"""Inbound emails stored raw before processing; queues can name an address told of centre replies.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 10:39:35.955117
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table('inbound_emails',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.String(length=998), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_inbound_emails_ticket_id_tickets'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_emails')),
    sa.UniqueConstraint('message_id', name=op.f('uq_inbound_emails_message_id'))
    )
    with op.batch_alter_table('inbound_emails', schema=None) as batch_op:
        batch_op.create_index('ix_inbound_emails_status_received', ['status', 'received_at'], unique=False)

    with op.batch_alter_table('queues', schema=None) as batch_op:
        batch_op.add_column(sa.Column('notify_address', sa.String(length=254), nullable=True))




def downgrade() -> None:

    with op.batch_alter_table('queues', schema=None) as batch_op:
        batch_op.drop_column('notify_address')

    with op.batch_alter_table('inbound_emails', schema=None) as batch_op:
        batch_op.drop_index('ix_inbound_emails_status_received')

    op.drop_table('inbound_emails')

