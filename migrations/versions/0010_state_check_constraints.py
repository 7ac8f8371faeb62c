"""CHECK constraints on the status, action, source, kind, direction and role columns.

The values are listed here as they are at this revision (a migration does not change when the code
does); tests/test_migrations.py checks that they equal the enums of triage.states. Rows holding any
other value stop the upgrade before anything is changed, with the values and their counts named:
there is no right value to guess for them, so the operator decides (the upgrade can then be run
again). On SQLite the tables are rebuilt (batch mode), which drops their triggers: the search
triggers of migration 0008 are read first and created again after.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table -> column -> the values it may hold (triage.states at this revision)
CHECKS: dict[str, dict[str, tuple[str, ...]]] = {
    "users": {"role": ("agent", "admin")},
    "tickets": {
        "status": ("open", "pending", "auto_replied", "resolved"),
        "action": ("auto_reply", "route", "triage", "none"),
    },
    "messages": {
        "direction": ("inbound", "outbound"),
        "kind": ("email", "bounce", "auto_reply", "ack", "staff_reply", "notification"),
    },
    "inbound_emails": {
        "source": ("webhook", "api", "imap", "ingest"),
        "status": ("pending", "processed", "rejected"),
    },
    "classifications": {"action": ("auto_reply", "route", "triage", "none")},
    "outbox": {"status": ("pending", "sending", "sent", "failed")},
    "model_versions": {"status": ("candidate", "active", "retired", "rejected")},
    "jobs": {"kind": ("retrain",), "status": ("queued", "running", "done", "failed")},
}


class UnexpectedValues(RuntimeError):
    """Rows hold values the new constraints would refuse; nothing was changed."""


def condition(column: str, values: tuple[str, ...]) -> str:
    """The CHECK condition: the column holds one of the values (NULL passes, as for any CHECK)."""
    listed = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({listed})"


def _unexpected() -> list[str]:
    """Each column's values outside its set, with their row counts, as lines for the operator."""
    bind = op.get_bind()
    found = []
    for table, columns in CHECKS.items():
        for column, values in columns.items():
            rows = bind.execute(
                sa.text(
                    f"SELECT {column}, count(*) FROM {table} "
                    f"WHERE NOT ({condition(column, values)}) GROUP BY {column} ORDER BY {column}"
                )
            ).all()
            found += [f"{table}.{column} = {value!r}: {count} rows" for value, count in rows]
    return found


def _triggers() -> list[str]:
    """SQLite: the CREATE TRIGGER statements on the tables about to be rebuilt (that drops them)."""
    if op.get_bind().dialect.name != "sqlite":
        return []
    query = sa.text(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN :tables ORDER BY name"
    ).bindparams(sa.bindparam("tables", expanding=True))
    return list(op.get_bind().scalars(query, {"tables": list(CHECKS)}))


def upgrade() -> None:
    problems = _unexpected()
    if problems:
        raise UnexpectedValues(
            "migration 0010 adds CHECK constraints, but these rows hold values outside them: "
            + "; ".join(problems)
            + ". Update or delete those rows (nothing has been changed), then migrate again."
        )
    triggers = _triggers()
    for table, columns in CHECKS.items():
        with op.batch_alter_table(table) as batch:
            for column, values in columns.items():
                batch.create_check_constraint(
                    op.f(f"ck_{table}_{column}"), condition(column, values)
                )
    for statement in triggers:
        op.execute(statement)


def downgrade() -> None:
    triggers = _triggers()
    for table, columns in reversed(CHECKS.items()):
        with op.batch_alter_table(table) as batch:
            for column in reversed(columns):
                batch.drop_constraint(op.f(f"ck_{table}_{column}"), type_="check")
    for statement in triggers:
        op.execute(statement)
