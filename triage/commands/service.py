"""Service commands: migrate, serve (web and worker together), worker."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import click
from flask import current_app

from triage import schema
from triage.classifier import registry
from triage.commands import app_settings, ready_engine, reports_config_errors, sessions, triage_cli
from triage.database import check_connection


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
    with sessions()() as session:
        active = registry.active_version(session)
    if active is None:
        click.echo(
            "WARNING: no active model: every email goes to the triage queue. See: flask --app app triage models list"
        )
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
    stopping = threading.Event()
    worker = Worker(default_tasks(settings, sessions(), stopping), sessions(), settings, stopping)
    if once:
        done = worker.run_once()
        click.echo(" ".join(f"{name}={count}" for name, count in done.items()) or "nothing to do")
        if any(count < 0 for count in done.values()):
            sys.exit(1)
        return
    click.echo("worker started; stop with Ctrl-C")
    worker.run_forever()
