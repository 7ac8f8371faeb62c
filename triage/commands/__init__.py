"""The `flask triage ...` command group and helpers shared by its commands."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import Engine, inspect
from sqlalchemy.orm import Session, sessionmaker

from triage import schema
from triage.config import ConfigError, Settings
from triage.database import check_connection, make_session_factory, transaction
from triage.helpdesk import macros
from triage.orm import Macro

triage_cli = AppGroup(
    "triage", help="IMI centre-enquiry triage: database, model, mail and worker commands."
)

P = ParamSpec("P")
R = TypeVar("R")


def init_app(app: Flask) -> None:
    """Register the command group (with every command module) on the app."""
    # importing the command modules registers their commands
    from triage.commands import channels, mail, model, service, users  # noqa: F401

    app.cli.add_command(triage_cli)


def app_settings() -> Settings:
    """Settings of the app the command runs in."""
    settings: Settings = current_app.extensions["triage.settings"]
    return settings


def reports_config_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn a ConfigError into one clear line on stderr and exit status 2."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def ready_engine(migrate_sqlite: bool = False) -> Engine:
    """The app's engine after checking the database is reachable and migrated.

    With `migrate_sqlite`, an embedded SQLite database is brought to head instead (it has one user).
    """
    engine: Engine = current_app.extensions["triage.engine"]
    check_connection(engine)
    if migrate_sqlite and engine.dialect.name == "sqlite":
        migrate(engine)
    schema.ensure_current(engine)
    return engine


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema; a macros table an upgrade to head creates gets the catalogue's seeds."""
    new_macros_table = revision == "head" and not inspect(engine).has_table(Macro.__tablename__)
    schema.upgrade(engine, revision)
    if new_macros_table:
        with transaction(make_session_factory(engine)) as session:
            macros.seed_from_catalogue(session)


def sessions() -> sessionmaker[Session]:
    """The app's session factory."""
    factory: sessionmaker[Session] = current_app.extensions["triage.sessions"]
    return factory
