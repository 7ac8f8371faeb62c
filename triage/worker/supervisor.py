"""Running the worker as a service: helper processes, CPU priority, signals, the delivery thread."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from triage.config import Settings
from triage.worker.loop import Nudge, Worker, tune_garbage_collector
from triage.worker.tasks import Role, delivery_loop_tasks, main_loop_tasks, task_context
from triage.worker.wakeup import Waker

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
WORKER_COMMAND = (sys.executable, "-m", "flask", "--app", "app", "triage", "worker")
HELPER_COMMAND = (*WORKER_COMMAND, "--helper")
HELPER_RESTART_CHECK_SECONDS = 1.0  # how often the supervisor looks for a helper that exited
HELPER_STOP_SECONDS = 30  # a helper finishes the batch in hand, or is killed after this
DELIVERY_STOP_SECONDS = 60  # the delivery thread finishes the message in hand, or is left behind


def stop_with_parent() -> None:
    """In a child process (Linux): get SIGTERM when the parent dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def start_worker_process() -> subprocess.Popen[bytes]:
    """Start `flask triage worker` beside this web server; call it before any thread starts.

    The worker gets SIGTERM if this process dies, and leads a session of its own, so that it can
    lower its CPU priority without lowering the web server's.
    """
    return subprocess.Popen(  # noqa: S603  (our own command, no shell)
        WORKER_COMMAND,
        env=os.environ.copy(),
        preexec_fn=stop_with_parent,
        start_new_session=True,
    )


def stop_process(proc: subprocess.Popen[bytes], seconds: float) -> None:
    """SIGTERM a child process (it finishes what it has in hand), kill it after `seconds`."""
    if proc.poll() is None:
        proc.terminate()
    _wait_or_kill(proc, seconds)


def _wait_or_kill(proc: subprocess.Popen[bytes], seconds: float) -> None:
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def exit_on_sigterm() -> None:
    """Make SIGTERM unwind this process like Ctrl-C does, running its `finally` blocks."""
    signal.signal(signal.SIGTERM, _exit_on_signal)


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def usable_processes(engine: Engine, asked: int) -> int:
    """How many worker processes run: as asked on PostgreSQL, one on SQLite (a single writer)."""
    return asked if engine.dialect.name == "postgresql" else 1


def lower_priority(nice: int) -> None:
    """Run this process (and the helpers it starts) below the web processes' CPU priority.

    The session is lowered first, so anyone who sees the lower nice value sees the session lowered.
    """
    _lower_own_session(nice)
    os.nice(nice)


def _lower_own_session(nice: int) -> None:
    """Give this process's session the same lower priority, when the process leads its own session.

    Linux with autogroups (the default on desktops and many servers) first shares the CPU equally
    between sessions, and only then by nice value inside each; a nice worker in a session of its own
    would still take as much CPU as the web server's session. Lowering the session's autogroup
    (/proc/self/autogroup) puts it below. A worker that shares its session (started from a shell)
    leaves the shell's priority alone.
    """
    autogroup = Path("/proc/self/autogroup")
    if os.getsid(0) != os.getpid() or not autogroup.exists():
        return
    try:
        autogroup.write_text(str(nice))
    except OSError as exc:
        log.warning(
            "could not lower this worker session's CPU priority (%s); its nice value still applies",
            exc,
        )


class Helpers(threading.Thread):
    """Keeps `count` helper worker processes running, restarting one that exits, until stopped."""

    def __init__(
        self, count: int, stopping: threading.Event, command: Sequence[str] = HELPER_COMMAND
    ) -> None:
        super().__init__(name="worker-helpers", daemon=True)
        self.count = count
        self.stopping = stopping
        self.command = command
        self.procs: list[subprocess.Popen[bytes]] = []
        self.lock = threading.Lock()

    def start(self) -> None:
        """Start the helpers, and the thread that watches them."""
        if self.count:
            with self.lock:
                self.procs = [self._spawn() for _ in range(self.count)]
            super().start()

    def run(self) -> None:
        """Restart a helper that exited while the worker is running."""
        while not self.stopping.wait(HELPER_RESTART_CHECK_SECONDS):
            with self.lock:
                for index, proc in enumerate(self.procs):
                    if proc.poll() is not None and not self.stopping.is_set():
                        log.warning(
                            "worker helper %s exited (%s); starting another",
                            proc.pid,
                            proc.returncode,
                        )
                        self.procs[index] = self._spawn()

    def stop(self) -> None:
        """SIGTERM every helper (each finishes the batch in hand) and wait for them."""
        with self.lock:
            for proc in self.procs:
                if proc.poll() is None:
                    proc.terminate()
            for proc in self.procs:
                _wait_or_kill(proc, HELPER_STOP_SECONDS)

    def _spawn(self) -> subprocess.Popen[bytes]:
        # a helper gets SIGTERM if the worker that started it dies (even by SIGKILL): no orphans
        return subprocess.Popen(  # noqa: S603  (our own command, no shell)
            self.command, env=os.environ.copy(), preexec_fn=stop_with_parent
        )


def run_once(sessions: sessionmaker[Session], settings: Settings, role: Role) -> dict[str, int]:
    """Run each of this process's tasks once (delivery too); return how many items each handled."""
    ctx = task_context(settings, sessions)
    return Worker(main_loop_tasks(ctx, role), sessions, settings, ctx.stopping).run_once()


class Supervisor:
    """One long-running worker process: its loop, its delivery thread and its helper processes.

    On PostgreSQL, replies go out from a loop of their own (a thread), so a slow SMTP server never
    holds up processing; SQLite keeps one loop (one writer at a time, and nothing to overlap).
    """

    def __init__(
        self,
        engine: Engine,
        sessions: sessionmaker[Session],
        settings: Settings,
        role: Role,
        processes: int,
    ) -> None:
        self.settings = settings
        self.role = role
        self.processes = processes
        self.waker = Waker(engine)
        nudge = Nudge() if engine.dialect.name == "postgresql" else None
        self.sessions = sessions
        # loads the model; retraining runs in a process of its own, so mail keeps flowing
        self.ctx = task_context(
            settings, sessions, delivery=nudge, background_jobs=role is Role.MAIN
        )
        self.stopping = self.ctx.stopping
        self.main = Worker(
            main_loop_tasks(self.ctx, role), sessions, settings, self.stopping, self.waker.wait
        )
        self.sender = None if nudge is None else self._delivery_thread(sessions, nudge)
        self.helpers = Helpers(processes - 1, self.stopping)

    def run(self, announce: Callable[[str], None]) -> None:
        """Start helpers and the delivery thread, then loop until SIGTERM or SIGINT and stop all."""
        if self.role is Role.MAIN and self.settings.worker_nice:
            # below the web processes: a burst of mail must not slow the webhook that accepts it
            # (the helpers started below inherit it)
            lower_priority(self.settings.worker_nice)
        tune_garbage_collector()  # the model is loaded (task_context)
        several = f" ({self.processes} processes)" if self.processes > 1 else ""
        announce(f"worker started; stop with Ctrl-C{several}")
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stopping.set())
            self.helpers.start()
            if self.sender is not None:
                self.sender.start()
            self.main.run_until_stopped()
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop every loop: the delivery thread hands its unsent claim back, helpers finish."""
        self.stopping.set()
        if self.sender is not None and self.sender.is_alive() and self.ctx.delivery is not None:
            self.ctx.delivery.wake()
            self.sender.join(timeout=DELIVERY_STOP_SECONDS)
        self.helpers.stop()
        if self.ctx.jobs is not None:
            self.ctx.jobs.stop(self.sessions)  # the job is queued again for the next worker
        self.waker.close()

    def _delivery_thread(self, sessions: sessionmaker[Session], nudge: Nudge) -> threading.Thread:
        delivery = Worker(
            delivery_loop_tasks(self.ctx), sessions, self.settings, self.stopping, nudge.wait
        )
        return threading.Thread(
            target=delivery.run_until_stopped, name="deliver-outbox", daemon=True
        )
