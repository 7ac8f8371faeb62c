"""Service commands: migrate, serve (web and worker together), worker."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

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
from triage.database import check_connection

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


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

    ready_engine()
    settings = app_settings()
    with sessions()() as session:
        active = registry.active_version(session)
    if active is None:
        click.echo(
            "WARNING: no active model: every email goes to the triage queue. See: flask --app app triage models list"
        )
    _check_port_free(host, port)
    worker: subprocess.Popen[bytes] | None = None
    if not no_worker:
        worker = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "app", "triage", "worker"],
            env=os.environ.copy(),
            preexec_fn=_stop_with_parent,  # no threads yet: the web server starts below
            start_new_session=True,  # its own session: it can lower its CPU priority without lowering the web's
        )
    # SIGTERM would end this process without running `finally`; make it unwind like Ctrl-C does.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    click.echo(
        f"IMI triage service on http://{host}:{port}/  (database: {_safe_url(settings.database_url)})"
    )
    if settings.outbox_dir is not None:
        click.echo(
            f"No SMTP_HOST configured: outgoing mail is written as .eml files into {settings.outbox_dir}"
        )
    click.echo(
        "First time? Create a staff login with: .venv/bin/flask --app app triage create-user you@example.org "
        '--name "Your Name" --role admin'
    )
    try:
        run_simple(host, port, current_app._get_current_object(), threaded=True, use_reloader=False)  # type: ignore[attr-defined]
    except KeyboardInterrupt:
        pass
    finally:
        if worker is not None:
            _stop_worker(worker)


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


def _stop_with_parent() -> None:
    """In the worker child (Linux): get SIGTERM if the serve process dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _exit_on_signal(signum: int, _frame: object) -> None:
    """Turn SIGTERM into a normal exit so the worker is stopped on the way out."""
    raise SystemExit(128 + signum)


def _stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """Ask the worker to stop (it finishes the message in hand), kill it if it does not within 10 s."""
    if worker.poll() is None:
        worker.terminate()
    try:
        worker.wait(timeout=10)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


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
    """Run the background worker: inbound mail processing, outbox delivery, IMAP polling, queued jobs."""
    from triage.worker.loop import Nudge, Worker, tune_garbage_collector
    from triage.worker.tasks import default_tasks, delivery_tasks
    from triage.worker.wakeup import Waker

    engine = ready_engine()
    settings = app_settings()
    stopping = threading.Event()
    waker = Waker(engine)
    # PostgreSQL: replies go out from a loop of their own, so a slow SMTP server never holds up processing
    # (SQLite keeps one loop: one writer at a time, and nothing to overlap)
    nudge = Nudge() if engine.dialect.name == "postgresql" and not once else None
    worker = Worker(
        default_tasks(settings, sessions(), stopping, helper=helper, delivery=nudge),
        sessions(),
        settings,
        stopping,
        waker.wait,
    )
    if once:
        done = worker.run_once()
        click.echo(" ".join(f"{name}={count}" for name, count in done.items()) or "nothing to do")
        if any(count < 0 for count in done.values()):
            sys.exit(1)
        return
    if processes > 1 and engine.dialect.name != "postgresql":
        click.echo(f"SQLite has one writer at a time: running 1 worker process, not {processes}")
        processes = 1
    if not helper and settings.worker_nice:
        # below the web processes: a burst of mail must not slow the webhook that accepts it (helpers inherit it)
        os.nice(settings.worker_nice)
        _lower_own_session(settings.worker_nice)
    supervisor = _Helpers(processes - 1, stopping)
    sender = None
    if nudge is not None:
        delivery = Worker(delivery_tasks(stopping), sessions(), settings, stopping, nudge.wait)
        sender = threading.Thread(
            target=delivery.run_until_stopped, name="deliver-outbox", daemon=True
        )
    tune_garbage_collector()  # the model is loaded (default_tasks)
    click.echo(
        "worker started; stop with Ctrl-C" + (f" ({processes} processes)" if processes > 1 else "")
    )
    try:
        supervisor.start()
        if sender is not None:
            sender.start()
        worker.run_forever()
    finally:
        stopping.set()
        if nudge is not None and sender is not None and sender.is_alive():
            nudge.wake()
            sender.join(
                timeout=60
            )  # it finishes the message in hand and hands the rest of its claim back
        supervisor.stop()
        waker.close()


def _lower_own_session(nice: int) -> None:
    """Give this process's session the same lower priority, when the process leads a session of its own.

    Linux with autogroups (the default on desktops and many servers) first shares the CPU equally between
    sessions, and only then by nice value inside each; a nice worker in a session of its own would still take
    as much CPU as the web server's session. Lowering the session's autogroup (/proc/self/autogroup) puts it
    below. A worker that shares its session (started from a shell) leaves the shell's priority alone.
    """
    autogroup = Path("/proc/self/autogroup")
    if os.getsid(0) != os.getpid() or not autogroup.exists():
        return
    try:
        autogroup.write_text(str(nice))
    except OSError as exc:
        click.echo(
            f"could not lower this worker session's CPU priority ({exc}); its nice value still applies",
            err=True,
        )


class _Helpers(threading.Thread):
    """Keeps N helper worker processes running (restarting one that dies) until stopped; SIGTERMs them at the end."""

    def __init__(self, count: int, stopping: threading.Event) -> None:
        super().__init__(name="worker-helpers", daemon=True)
        self.count = count
        self.stopping = stopping
        self.procs: list[subprocess.Popen[bytes]] = []
        self.lock = threading.Lock()

    def _spawn(self) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "flask", "--app", "app", "triage", "worker", "--helper"]
        # a helper gets SIGTERM if the worker that started it dies (even by SIGKILL): no orphans
        return subprocess.Popen(command, env=os.environ.copy(), preexec_fn=_stop_with_parent)  # noqa: S603

    def start(self) -> None:
        """Start the helpers, and the thread that watches them."""
        if self.count:
            with self.lock:
                self.procs = [self._spawn() for _ in range(self.count)]
            super().start()

    def run(self) -> None:
        """Restart a helper that exited while the worker is running."""
        while not self.stopping.wait(1.0):
            with self.lock:
                for index, proc in enumerate(self.procs):
                    if proc.poll() is not None and not self.stopping.is_set():
                        click.echo(
                            f"worker helper {proc.pid} exited ({proc.returncode}); starting another",
                            err=True,
                        )
                        self.procs[index] = self._spawn()

    def stop(self) -> None:
        """SIGTERM every helper (each finishes the batch in hand) and wait for them."""
        with self.lock:
            for proc in self.procs:
                if proc.poll() is None:
                    proc.terminate()
            for proc in self.procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
