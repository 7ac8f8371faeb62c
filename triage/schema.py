"""Run Alembic migrations and compare the database with the models, from code (CLI and tests)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from triage.config import REPO_ROOT, ConfigError
from triage.orm import Base

SEARCH_TABLE = (
    "ticket_search"  # full-text search (migration 0008): a tsvector table or an FTS5 virtual table
)


def include_name(name: str | None, type_: str, _parent_names: object) -> bool:
    """Leave the search table (and SQLite's FTS5 shadow tables) out of the model comparison:
    triggers keep it."""
    return not (
        type_ == "table"
        and name is not None
        and (name == SEARCH_TABLE or name.startswith(SEARCH_TABLE + "_"))
    )


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for the repo's migrations, optionally bound to an open connection."""
    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    cfg.attributes["configure_logger"] = False
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@contextmanager
def migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction for migrations.

    On SQLite, foreign keys are switched off for the duration (before the transaction, where SQLite
    honours it), because batch mode rebuilds a table by copying and dropping it.
    """
    with engine.connect() as conn:
        sqlite = engine.dialect.name == "sqlite"
        if sqlite:
            _driver_execute(conn, "PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                yield conn
        finally:
            if sqlite:
                _driver_execute(conn, "PRAGMA foreign_keys=ON")


def _driver_execute(conn: Connection, sql: str) -> None:
    """Run `sql` on the driver's own connection, outside SQLAlchemy's transaction handling."""
    driver = conn.connection.dbapi_connection
    assert driver is not None  # an open Connection holds its driver connection
    driver.execute(sql)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database to a revision (default: the newest)."""
    with migration_connection(engine) as conn:
        command.upgrade(alembic_config(conn), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Downgrade the database to a revision (default: empty)."""
    with migration_connection(engine) as conn:
        command.downgrade(alembic_config(conn), revision)


def head_revision() -> str | None:
    """The newest revision in migrations/."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an unmigrated database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def pending_model_changes(engine: Engine) -> list[object]:
    """Differences between the migrated database and the models (empty when they agree)."""
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                "include_name": include_name,
            },
        )
        changes: list[object] = compare_metadata(ctx, Base.metadata)
        return changes


def ensure_current(engine: Engine) -> None:
    """Raise ConfigError unless the database is migrated to head (tells the operator what to
    run)."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise ConfigError(
            f"database is at revision {current or 'none'}, the code needs {head}; "
            "run: flask --app app triage migrate"
        )
