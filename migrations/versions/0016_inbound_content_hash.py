"""Inbound mail unique by Message-ID and content hash; retry times; the posting token;
messages.message_id no longer unique.

A different email may reuse a Message-ID (broken mailers, ticket systems): it is stored and
processed, while an exact copy is still a duplicate. The hash of each stored email is computed
here, by the code the running service uses (triage/mail/fingerprint.py). On SQLite the tables
are rebuilt (batch mode), which drops their triggers: the search triggers of migration 0008 are read
first and created again after.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 16:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from triage.mail.fingerprint import content_hash

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

def _triggers(tables: list[str]) -> list[str]:
    """SQLite: the CREATE TRIGGER statements on the tables about to be rebuilt (that drops them)."""
    if op.get_bind().dialect.name != "sqlite":
        return []
    query = sa.text(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN :tables ORDER BY name"
    ).bindparams(sa.bindparam("tables", expanding=True))
    return list(op.get_bind().scalars(query, {"tables": tables}))


def _fill_hashes() -> None:
    """Hash every stored email, a batch at a time (bounded memory)."""
    bind = op.get_bind()
    last = 0
    while True:
        rows = bind.execute(
            sa.text("SELECT id, raw FROM inbound_emails WHERE id > :last ORDER BY id LIMIT 200"),
            {"last": last},
        ).all()
        if not rows:
            return
        bind.execute(
            sa.text("UPDATE inbound_emails SET content_hash = :hash WHERE id = :id"),
            [{"id": row.id, "hash": content_hash(bytes(row.raw))} for row in rows],
        )
        last = rows[-1].id


def upgrade() -> None:
    triggers = _triggers(["inbound_emails", "messages"])
    with op.batch_alter_table("inbound_emails") as batch:
        batch.add_column(
            sa.Column("content_hash", sa.String(length=64), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("api_token_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_inbound_emails_api_token_id_api_tokens"),
            "api_tokens",
            ["api_token_id"],
            ["id"],
            ondelete="SET NULL",
        )
    _fill_hashes()
    with op.batch_alter_table("inbound_emails") as batch:
        batch.alter_column("content_hash", server_default=None)
        batch.drop_constraint(op.f("uq_inbound_emails_message_id"), type_="unique")
        batch.create_unique_constraint(
            "uq_inbound_emails_message_id_content_hash", ["message_id", "content_hash"]
        )
    with op.batch_alter_table("messages") as batch:
        batch.drop_constraint(op.f("uq_messages_message_id"), type_="unique")
        batch.create_index(op.f("ix_messages_message_id"), ["message_id"], unique=False)
    for statement in triggers:
        op.execute(statement)


def downgrade() -> None:
    triggers = _triggers(["inbound_emails", "messages"])
    with op.batch_alter_table("messages") as batch:
        batch.drop_index(op.f("ix_messages_message_id"))
        batch.create_unique_constraint(op.f("uq_messages_message_id"), ["message_id"])
    with op.batch_alter_table("inbound_emails") as batch:
        batch.drop_constraint("uq_inbound_emails_message_id_content_hash", type_="unique")
        batch.create_unique_constraint(op.f("uq_inbound_emails_message_id"), ["message_id"])
        batch.drop_constraint(
            op.f("fk_inbound_emails_api_token_id_api_tokens"), type_="foreignkey"
        )
        batch.drop_column("api_token_id")
        batch.drop_column("next_attempt_at")
        batch.drop_column("content_hash")
    for statement in triggers:
        op.execute(statement)
