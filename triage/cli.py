"""The `flask triage ...` command group."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from triage import schema
from triage.config import ConfigError, Settings
from triage.database import check_connection

triage_cli = AppGroup("triage", help="IMI centre-enquiry triage: database, model, mail and worker commands.")

F = TypeVar("F", bound=Callable[..., Any])


def init_app(app: Flask) -> None:
    """Register the command group on the app."""
    app.cli.add_command(triage_cli)


def app_settings() -> Settings:
    """Settings of the app the command runs in."""
    return current_app.extensions["triage.settings"]


def reports_config_errors(func: F) -> F:
    """Turn a ConfigError into one clear line on stderr and exit status 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def ready_engine():  # type: ignore[no-untyped-def]
    """The app's engine after checking the database is reachable and migrated."""
    engine = current_app.extensions["triage.engine"]
    check_connection(engine)
    schema.ensure_current(engine)
    return engine


@triage_cli.command("migrate")
@click.option("--revision", default="head", show_default=True, help="Alembic revision to upgrade to.")
@reports_config_errors
def migrate_command(revision: str) -> None:
    """Create or upgrade the database schema (Alembic upgrade)."""
    engine = current_app.extensions["triage.engine"]
    check_connection(engine)
    schema.upgrade(engine, revision)
    click.echo(f"database at revision {schema.current_revision(engine)}")


@triage_cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--no-worker", is_flag=True, help="Do not start the background worker alongside.")
@reports_config_errors
def serve_command(host: str, port: int, no_worker: bool) -> None:
    """Run the web app and the background worker together (the embedded, single-machine mode)."""
    from werkzeug.serving import run_simple

    ready_engine()
    settings = app_settings()
    worker: subprocess.Popen[bytes] | None = None
    if not no_worker:
        worker = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "app", "triage", "worker"], env=os.environ.copy()
        )
    click.echo(f"IMI triage service on http://{host}:{port}/  (database: {_safe_url(settings.database_url)})")
    if settings.outbox_dir is not None:
        click.echo(f"No SMTP_HOST configured: outgoing mail is written as .eml files into {settings.outbox_dir}")
    click.echo(
        "First time? Create a staff login with: .venv/bin/flask --app app triage create-user you@example.org --role admin"
    )
    try:
        run_simple(host, port, current_app._get_current_object(), threaded=True, use_reloader=False)  # type: ignore[attr-defined]
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@triage_cli.command("worker")
@click.option("--once", is_flag=True, help="Do what is due now and exit (for cron and tests).")
@reports_config_errors
def worker_command(once: bool) -> None:
    """Run the background worker: outbox delivery, IMAP polling, queued jobs."""
    from triage.tasks import default_tasks
    from triage.worker import Worker

    ready_engine()
    settings = app_settings()
    worker = Worker(default_tasks(settings), current_app.extensions["triage.sessions"], settings)
    if once:
        done = worker.run_once()
        click.echo(" ".join(f"{name}={count}" for name, count in done.items()) or "nothing to do")
        if any(count < 0 for count in done.values()):
            sys.exit(1)
        return
    click.echo("worker started; stop with Ctrl-C")
    worker.run_forever()
