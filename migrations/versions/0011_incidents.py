"""Incidents (one reply to many centres), ticket links and merged duplicates.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 16:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table -> column -> the values it may hold (triage.states at this revision)
CHECKS: dict[str, dict[str, tuple[str, ...]]] = {
    "incidents": {"status": ("open", "resolved")},
    "ticket_links": {"kind": ("related", "duplicate")},
}


def _check(table: str, column: str) -> sa.CheckConstraint:
    listed = ", ".join(f"'{value}'" for value in CHECKS[table][column])
    return sa.CheckConstraint(f"{column} IN ({listed})", name=op.f(f"ck_{table}_{column}"))


def _ticket_triggers() -> list[str]:
    """SQLite: the CREATE TRIGGER statements on tickets (rebuilding the table in batch mode drops
    them; migration 0008's search triggers are created again after)."""
    if op.get_bind().dialect.name != "sqlite":
        return []
    query = sa.text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'tickets'")
    return list(op.get_bind().scalars(query))


def upgrade() -> None:
    """Add the incidents and ticket_links tables and the tickets' incident and merged-into columns."""
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        _check("incidents", "status"),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_incidents_created_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    op.create_table(
        "ticket_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("other_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _check("ticket_links", "kind"),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_ticket_links_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["other_id"],
            ["tickets.id"],
            name=op.f("fk_ticket_links_other_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_ticket_links_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_links")),
        sa.UniqueConstraint("ticket_id", "other_id", name=op.f("uq_ticket_links_ticket_id")),
    )
    op.create_index("ix_ticket_links_other", "ticket_links", ["other_id"])
    triggers = _ticket_triggers()
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("incident_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("merged_into_id", sa.Integer(), nullable=True))
        batch.create_index(batch.f("ix_tickets_incident_id"), ["incident_id"])
        batch.create_foreign_key(
            batch.f("fk_tickets_incident_id_incidents"),
            "incidents",
            ["incident_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_foreign_key(
            batch.f("fk_tickets_merged_into_id_tickets"), "tickets", ["merged_into_id"], ["id"]
        )
    for statement in triggers:
        op.execute(statement)


def downgrade() -> None:
    """Drop what upgrade added."""
    triggers = _ticket_triggers()
    with op.batch_alter_table("tickets") as batch:
        batch.drop_constraint(batch.f("fk_tickets_merged_into_id_tickets"), type_="foreignkey")
        batch.drop_constraint(batch.f("fk_tickets_incident_id_incidents"), type_="foreignkey")
        batch.drop_index(batch.f("ix_tickets_incident_id"))
        batch.drop_column("merged_into_id")
        batch.drop_column("incident_id")
    for statement in triggers:
        op.execute(statement)
    op.drop_index("ix_ticket_links_other", table_name="ticket_links")
    op.drop_table("ticket_links")
    op.drop_table("incidents")
