"""Staff workspace: urgency, response targets, centre-reply markers, notification preferences, full-text search.

Search is one document per ticket (centre address and name, subject, and the bodies of the centre's
emails), kept by triggers so every writer (web, worker, CLI) keeps it current:
PostgreSQL: table ticket_search (tsvector, GIN index); SQLite: FTS5 virtual table ticket_search.
Neither is in the SQLAlchemy models; triage.schema leaves them out of the model comparison.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 17:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BODY_CHARS = 20000  # of each message's body go into the search document

PG_UP = [
    f"""CREATE FUNCTION ticket_search_words(t text) RETURNS tsvector LANGUAGE sql IMMUTABLE AS $$
        SELECT strip(to_tsvector('simple', regexp_replace(lower(left(coalesce(t, ''), {BODY_CHARS})), '[^[:alnum:]]+', ' ', 'g')))
    $$""",
    """CREATE TABLE ticket_search (
        ticket_id integer PRIMARY KEY REFERENCES tickets(id) ON DELETE CASCADE,
        document tsvector NOT NULL
    )""",
    "CREATE INDEX ix_ticket_search_document ON ticket_search USING gin (document)",
    """CREATE FUNCTION ticket_search_ticket() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO ticket_search (ticket_id, document)
        VALUES (NEW.id, ticket_search_words(NEW.centre_email || ' ' || NEW.centre_name || ' ' || NEW.subject)
                        || coalesce((SELECT ticket_search_words(string_agg(left(m.body_text, 20000), ' '))
                                     FROM messages m WHERE m.ticket_id = NEW.id AND m.direction = 'inbound'), ''::tsvector))
        ON CONFLICT (ticket_id) DO UPDATE SET document = EXCLUDED.document;
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION ticket_search_message() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE ticket_search SET document = document || ticket_search_words(NEW.body_text)
        WHERE ticket_id = NEW.ticket_id AND octet_length(document::text) < 500000;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER ticket_search_ticket AFTER INSERT OR UPDATE OF centre_email, centre_name, subject ON tickets
       FOR EACH ROW EXECUTE FUNCTION ticket_search_ticket()""",
    """CREATE TRIGGER ticket_search_message AFTER INSERT ON messages
       FOR EACH ROW WHEN (NEW.direction = 'inbound') EXECUTE FUNCTION ticket_search_message()""",
    """INSERT INTO ticket_search (ticket_id, document)
       SELECT t.id, ticket_search_words(t.centre_email || ' ' || t.centre_name || ' ' || t.subject)
                    || coalesce((SELECT ticket_search_words(string_agg(left(m.body_text, 20000), ' '))
                                 FROM messages m WHERE m.ticket_id = t.id AND m.direction = 'inbound'), ''::tsvector)
       FROM tickets t""",
]
PG_DOWN = [
    "DROP TRIGGER IF EXISTS ticket_search_message ON messages",
    "DROP TRIGGER IF EXISTS ticket_search_ticket ON tickets",
    "DROP FUNCTION IF EXISTS ticket_search_message()",
    "DROP FUNCTION IF EXISTS ticket_search_ticket()",
    "DROP TABLE IF EXISTS ticket_search",
    "DROP FUNCTION IF EXISTS ticket_search_words(text)",
]

SQLITE_UP = [
    # the same tokens as PostgreSQL above: runs of letters and digits, lower-cased, accents kept
    "CREATE VIRTUAL TABLE ticket_search USING fts5(centre, subject, body, tokenize = 'unicode61 remove_diacritics 0')",
    """CREATE TRIGGER ticket_search_ticket_insert AFTER INSERT ON tickets BEGIN
        INSERT INTO ticket_search (rowid, centre, subject, body)
        VALUES (new.id, new.centre_email || ' ' || new.centre_name, new.subject, '');
    END""",
    """CREATE TRIGGER ticket_search_ticket_update AFTER UPDATE OF centre_email, centre_name, subject ON tickets BEGIN
        UPDATE ticket_search SET centre = new.centre_email || ' ' || new.centre_name, subject = new.subject
        WHERE rowid = new.id;
    END""",
    """CREATE TRIGGER ticket_search_ticket_delete AFTER DELETE ON tickets BEGIN
        DELETE FROM ticket_search WHERE rowid = old.id;
    END""",
    f"""CREATE TRIGGER ticket_search_message_insert AFTER INSERT ON messages WHEN new.direction = 'inbound' BEGIN
        UPDATE ticket_search SET body = body || ' ' || substr(new.body_text, 1, {BODY_CHARS})
        WHERE rowid = new.ticket_id AND length(body) < 500000;
    END""",
    f"""INSERT INTO ticket_search (rowid, centre, subject, body)
        SELECT t.id, t.centre_email || ' ' || t.centre_name, t.subject,
               coalesce((SELECT group_concat(substr(m.body_text, 1, {BODY_CHARS}), ' ') FROM messages m
                         WHERE m.ticket_id = t.id AND m.direction = 'inbound'), '')
        FROM tickets t""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS ticket_search_message_insert",
    "DROP TRIGGER IF EXISTS ticket_search_ticket_delete",
    "DROP TRIGGER IF EXISTS ticket_search_ticket_update",
    "DROP TRIGGER IF EXISTS ticket_search_ticket_insert",
    "DROP TABLE IF EXISTS ticket_search",
]


def upgrade() -> None:
    with op.batch_alter_table("queues") as batch:
        batch.add_column(sa.Column("first_response_minutes", sa.Integer(), server_default="480", nullable=False))
        batch.add_column(sa.Column("next_response_minutes", sa.Integer(), server_default="480", nullable=False))
        batch.add_column(sa.Column("urgent_response_minutes", sa.Integer(), server_default="15", nullable=False))
    with op.batch_alter_table("users") as batch:
        for name in ("notify_centre_replies", "notify_urgent", "notify_overdue"):
            batch.add_column(sa.Column(name, sa.Boolean(), server_default=sa.true(), nullable=False))
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("urgent", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("urgent_reason", sa.String(length=300), nullable=True))
        for name in ("centre_replied_at", "last_staff_action_at", "urgent_notified_at", "reply_notified_at",
                     "overdue_notified_due"):
            batch.add_column(sa.Column(name, sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_tickets_status_urgent", ["status", "urgent"], unique=False)
    statements = PG_UP if op.get_bind().dialect.name == "postgresql" else SQLITE_UP
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    statements = PG_DOWN if op.get_bind().dialect.name == "postgresql" else SQLITE_DOWN
    for statement in statements:
        op.execute(statement)
    with op.batch_alter_table("tickets") as batch:
        batch.drop_index("ix_tickets_status_urgent")
        for name in ("overdue_notified_due", "reply_notified_at", "urgent_notified_at", "last_staff_action_at",
                     "centre_replied_at", "urgent_reason", "urgent"):
            batch.drop_column(name)
    with op.batch_alter_table("users") as batch:
        for name in ("notify_overdue", "notify_urgent", "notify_centre_replies"):
            batch.drop_column(name)
    with op.batch_alter_table("queues") as batch:
        for name in ("urgent_response_minutes", "next_response_minutes", "first_response_minutes"):
            batch.drop_column(name)
