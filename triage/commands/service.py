"""Service commands: migrate, serve (web and worker together), worker."""

from __future__ import annotations

import socket
import sys

import click
from flask import current_app

from triage import schema
from triage.classifier import registry
from triage.commands import (
    app_settings,
    migrate,
    ready_engine,
    reports_config_errors,
    sessions,
    triage_cli,
)
from triage.config import Settings
from triage.database import check_connection

SERVE_WORKER_STOP_SECONDS = 10  # serve waits this long for its worker to stop, then kills it


@triage_cli.command("migrate")
@click.option(
    "--revision", default="head", show_default=True, help="Alembic revision to upgrade to."
)
@reports_config_errors
def migrate_command(revision: str) -> None:
    """Create or upgrade the database schema (Alembic upgrade)."""
    engine = current_app.extensions["triage.engine"]
    check_connection(engine)
    migrate(engine, revision)
    click.echo(f"database at revision {schema.current_revision(engine)}")


@triage_cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--no-worker", is_flag=True, help="Do not start the background worker alongside.")
@reports_config_errors
def serve_command(host: str, port: int, no_worker: bool) -> None:
    """Run the web app and the background worker together (the embedded, single-machine mode)."""
    from werkzeug.serving import run_simple

    from triage.worker import supervisor

    ready_engine()
    settings = app_settings()
    _warn_without_active_model()
    _check_port_free(host, port)
    # no threads yet (the web server starts below): the worker can be started safely
    worker = None if no_worker else supervisor.start_worker_process()
    supervisor.exit_on_sigterm()  # SIGTERM would end this process without running `finally`
    _print_banner(host, port, settings)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        run_simple(host, port, app, threaded=True, use_reloader=False)
    except KeyboardInterrupt:
        pass
    finally:
        if worker is not None:
            # it finishes the message in hand, or is killed
            supervisor.stop_process(worker, SERVE_WORKER_STOP_SECONDS)


def _warn_without_active_model() -> None:
    """Say how to go on when no model is active: every email would go to the triage queue."""
    with sessions()() as session:
        if registry.active_version(session) is None:
            click.echo(
                "WARNING: no active model: every email goes to the triage queue. "
                "See: flask --app app triage models list"
            )


def _print_banner(host: str, port: int, settings: Settings) -> None:
    """Where the service answers, where its mail goes and how to log in the first time."""
    click.echo(
        f"IMI triage service on http://{host}:{port}/  "
        f"(database: {_safe_url(settings.database_url)})"
    )
    if settings.outbox_dir is not None:
        click.echo(
            "No SMTP_HOST configured: outgoing mail is written as .eml files into "
            f"{settings.outbox_dir}"
        )
    click.echo(
        "First time? Create a staff login with: .venv/bin/flask --app app triage create-user "
        'you@example.org --name "Your Name" --role admin'
    )


def _check_port_free(host: str, port: int) -> None:
    """Fail with a hint when the port is taken, before anything is started."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
            f"choose another port: make run PORT=5001 (or flask --app app triage serve --port 5001)"
        ) from None


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@triage_cli.command("worker")
@click.option("--once", is_flag=True, help="Do what is due now and exit (for cron and tests).")
@click.option(
    "--processes",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes on this host (PostgreSQL; SQLite keeps one): the extra ones process "
    "mail and deliver replies.",
)
@click.option(
    "--helper", is_flag=True, hidden=True, help="Run as an extra process of --processes N."
)
@reports_config_errors
def worker_command(once: bool, processes: int, helper: bool) -> None:
    """Run the background worker: inbound mail, outbox delivery, IMAP polling, queued jobs."""
    from triage.worker import supervisor
    from triage.worker.tasks import Role

    engine = ready_engine()
    role = Role.HELPER if helper else Role.MAIN
    if once:
        done = supervisor.run_once(sessions(), app_settings(), role)
        click.echo(" ".join(f"{name}={count}" for name, count in done.items()) or "nothing to do")
        if any(count < 0 for count in done.values()):
            sys.exit(1)
        return
    usable = supervisor.usable_processes(engine, processes)
    if usable < processes:
        click.echo(
            f"SQLite has one writer at a time: running {usable} worker process, not {processes}"
        )
    service = supervisor.Supervisor(engine, sessions(), app_settings(), role, usable)
    service.run(announce=click.echo)
