"""Migrations and models agree, and upgrade/downgrade both work, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from tests.conftest import BACKENDS, PG_URL
from triage import schema
from triage.database import make_engine
from triage.orm import Base, StrEnumType


@pytest.fixture(params=BACKENDS)
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a database (or PostgreSQL schema) with nothing in it."""
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
        yield eng
        eng.dispose()
        return
    name = f"mig_{uuid.uuid4().hex[:12]}"
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {name}"))
    eng = make_engine(PG_URL, connect_args={"options": f"-csearch_path={name}"})
    yield eng
    eng.dispose()
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {name} CASCADE"))
    admin.dispose()


def test_upgrade_matches_models_and_downgrade_empties(empty_engine: Engine) -> None:
    assert schema.current_revision(empty_engine) is None
    schema.upgrade(empty_engine)
    assert schema.current_revision(empty_engine) == schema.head_revision()
    assert schema.pending_model_changes(empty_engine) == []
    schema.ensure_current(empty_engine)
    schema.downgrade(empty_engine)
    assert set(inspect(empty_engine).get_table_names()) <= {"alembic_version"}
    schema.upgrade(empty_engine)  # and back up again cleanly
    assert schema.pending_model_changes(empty_engine) == []


def test_ensure_current_names_the_command_to_run(empty_engine: Engine) -> None:
    from triage.config import ConfigError

    with pytest.raises(ConfigError, match="triage migrate"):
        schema.ensure_current(empty_engine)


def _enum_columns() -> dict[tuple[str, str], set[str]]:
    """(table, column) -> the enum's values, for every column the models store a StrEnum in."""
    return {
        (table.name, column.name): {member.value for member in column.type.enum_class}
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, StrEnumType)
    }


def test_check_constraints_in_the_database_hold_the_enum_values(empty_engine: Engine) -> None:
    schema.upgrade(empty_engine)
    inspector = inspect(empty_engine)
    found = {}
    for table in {table for table, _column in _enum_columns()}:
        for check in inspector.get_check_constraints(table):
            column = check["name"].removeprefix(f"ck_{table}_")
            found[(table, column)] = set(re.findall(r"'([^']*)'", check["sqltext"]))
    assert found == _enum_columns()


def test_the_migration_lists_the_enum_values() -> None:
    """Migrations freeze the values as literals (0010 the first set, later ones in their own CHECKS);
    together they are the enums' (a new value needs a migration of its own, which this test then
    points at)."""
    scripts = ScriptDirectory.from_config(schema.alembic_config())
    listed = {
        (table, column): set(values)
        for revision in reversed(list(scripts.walk_revisions()))  # oldest first: later lists win
        for table, columns in getattr(revision.module, "CHECKS", {}).items()
        for column, values in columns.items()
    }
    assert listed == _enum_columns()


def test_unexpected_values_stop_the_upgrade_and_change_nothing(empty_engine: Engine) -> None:
    schema.upgrade(empty_engine, "0009")
    with empty_engine.begin() as conn:
        for subject, status in (("a", "closed"), ("b", "closed"), ("c", "open")):
            conn.execute(
                text(
                    "INSERT INTO tickets (centre_email, centre_name, subject, status, created_at,"
                    " updated_at) VALUES ('jo@college.example', '', :subject, :status,"
                    " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"subject": subject, "status": status},
            )
        conn.execute(
            text(
                "INSERT INTO jobs (kind, status, progress, result, requested_by, created_at)"
                " VALUES ('export', 'queued', '', '{}', '', CURRENT_TIMESTAMP)"
            )
        )
    with pytest.raises(Exception, match="export") as raised:
        schema.upgrade(empty_engine)
    assert type(raised.value).__name__ == "UnexpectedValues"
    assert "tickets.status = 'closed': 2 rows" in str(raised.value)
    assert "jobs.kind = 'export': 1 rows" in str(raised.value)
    assert schema.current_revision(empty_engine) == "0009"
    assert inspect(empty_engine).get_check_constraints("tickets") == []
    with empty_engine.begin() as conn:  # the operator decides: here, closed means resolved
        conn.execute(text("UPDATE tickets SET status = 'resolved' WHERE status = 'closed'"))
        conn.execute(text("DELETE FROM jobs WHERE kind = 'export'"))
    schema.upgrade(empty_engine)
    assert schema.current_revision(empty_engine) == schema.head_revision()
    with empty_engine.begin() as conn:  # the search triggers survived the rebuild (SQLite)
        conn.execute(
            text(
                "INSERT INTO tickets (centre_email, centre_name, subject, status, created_at,"
                " updated_at) VALUES ('jo@college.example', '', 'frozen screen', 'open',"
                " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
        searchable = conn.scalar(text("SELECT count(*) FROM ticket_search"))
    assert searchable == 4


def test_0016_hashes_stored_mail_and_lets_a_message_id_be_reused(empty_engine: Engine) -> None:
    from triage.mail.fingerprint import content_hash

    schema.upgrade(empty_engine, "0015")
    raw = b"From: jo@c.example\r\nMessage-ID: <m.1@c.example>\r\nSubject: a\r\n\r\nfirst\r\n"
    with empty_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO inbound_emails (message_id, raw, source, status, attempts,"
                " received_at) VALUES ('<m.1@c.example>', :raw, 'webhook', 'pending', 0,"
                " CURRENT_TIMESTAMP)"
            ),
            {"raw": raw},
        )
    schema.upgrade(empty_engine)
    other = raw.replace(b"first", b"second")
    with empty_engine.begin() as conn:
        assert conn.scalar(text("SELECT content_hash FROM inbound_emails")) == content_hash(raw)
        conn.execute(
            text(
                "INSERT INTO inbound_emails (message_id, content_hash, raw, source, status,"
                " attempts, received_at) VALUES ('<m.1@c.example>', :hash, :raw, 'webhook',"
                " 'pending', 0, CURRENT_TIMESTAMP)"
            ),
            {"raw": other, "hash": content_hash(other)},
        )
        conn.execute(
            text(
                "INSERT INTO tickets (centre_email, centre_name, subject, status, created_at,"
                " updated_at) VALUES ('jo@c.example', '', 'frozen screen', 'open',"
                " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
        assert conn.scalar(text("SELECT count(*) FROM ticket_search")) == 1  # triggers kept
