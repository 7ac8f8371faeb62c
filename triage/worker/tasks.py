"""The worker's tasks, declared as data in one table (TASKS), and what each process of it runs."""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial

from sqlalchemy.orm import Session, sessionmaker

from triage.classifier.registry import ModelProvider
from triage.config import Settings
from triage.helpdesk import channel_alerts, notifications
from triage.mail import channel_polling, channels
from triage.mail.delivery import deliver_due
from triage.mail.inbound import InboundContext, process_pending, receive
from triage.states import InboundSource
from triage.worker.jobs import JobRunner, run_queued
from triage.worker.loop import Nudge, Task

# while mail streams in, staff notifications are looked for once a second
NOTIFY_EVERY_SECONDS = 1.0
CHANNEL_ALERT_EVERY_SECONDS = 60.0  # how often failing mail channels are looked at


class Role(StrEnum):
    """Which worker process this is."""

    MAIN = "main"  # one per host: it also polls the inbox and runs queued jobs
    HELPER = "helper"  # an extra process of `worker --processes N`: it processes and delivers mail


class RunsIn(StrEnum):
    """Where a task runs."""

    MAIN_ONLY = "main only"  # the main process's loop
    EVERY_PROCESS = "every process"  # the loop of the main process and of every helper
    # a loop of its own (a thread, on PostgreSQL) when the process has one, else its main loop
    DELIVERY_LOOP = "delivery loop"


@dataclass
class RoundState:
    """What one worker process remembers from round to round."""

    last_batch: int = 0  # emails the last processing round handled: mail streams in while above 0
    last_started: dict[str, float] = field(default_factory=dict)  # task name -> time.monotonic()

    def take_turn(self, name: str, interval: float | None, now: float) -> bool:
        """Whether task `name` runs now, noting it if so.

        Always, unless it has an interval, mail streams in and it ran less than `interval` ago.
        """
        last = self.last_started.get(name, -math.inf)
        if interval is not None and self.last_batch > 0 and now - last < interval:
            return False
        self.last_started[name] = now
        return True


@dataclass(frozen=True)
class TaskContext:
    """What the tasks of one worker process share."""

    inbound: InboundContext
    stopping: threading.Event  # the shutdown flag: long tasks end early and hand work back
    worker_id: str  # stored on the outbox rows and jobs this process claims
    delivery: Nudge | None  # wakes the delivery loop when it runs apart (None: delivery is a task)
    state: RoundState = field(default_factory=RoundState)
    # runs jobs in a process of their own (a long-running worker); None: in this process, to the end
    jobs: JobRunner | None = None

    @property
    def settings(self) -> Settings:
        """The settings the tasks run with."""
        return self.inbound.settings


TaskFunction = Callable[[TaskContext, sessionmaker[Session], Settings], int]


def _always(_settings: Settings) -> bool:
    return True


def _imap_configured(settings: Settings) -> bool:
    return bool(channels.load(settings).polled())


def _mail_servers_configured(settings: Settings) -> bool:
    return any(c.imap is not None or c.smtp is not None for c in channels.load(settings))


@dataclass(frozen=True)
class TaskSpec:
    """One row of the task table; `run` returns how many items it handled."""

    name: str
    run: TaskFunction
    runs_in: RunsIn
    # None: every round. Seconds: at most once per interval while mail streams in, and still after
    # every round in which the worker is about to idle
    interval: float | None = None
    enabled: Callable[[Settings], bool] = _always


def poll_imap(ctx: TaskContext, sessions: sessionmaker[Session], settings: Settings) -> int:
    """Store and process the new mail in every channel's IMAP inbox (failures are recorded as
    the channel's health, and alert the admins when they last)."""
    count, _failures = channel_polling.poll_all(
        sessions,
        settings,
        lambda raw, channel: receive(
            sessions, ctx.inbound, raw, InboundSource.IMAP, keep_unparseable=True, channel=channel
        ),
        should_stop=ctx.stopping.is_set,
    )
    return count


def process_inbound(ctx: TaskContext, sessions: sessionmaker[Session], _settings: Settings) -> int:
    """Process one batch of stored mail, then wake the delivery loop to send its replies."""
    processed = process_pending(sessions, ctx.inbound, should_stop=ctx.stopping.is_set)
    ctx.state.last_batch = processed
    if processed and ctx.delivery is not None:
        ctx.delivery.wake()  # its replies are committed: send them now, while the next batch runs
    return processed


def notify_staff(_ctx: TaskContext, sessions: sessionmaker[Session], settings: Settings) -> int:
    """Queue the staff notifications that are due."""
    return notifications.run(sessions, settings)


def deliver_outbox(ctx: TaskContext, sessions: sessionmaker[Session], settings: Settings) -> int:
    """Send the outbox rows that are due."""
    return deliver_due(sessions, settings, ctx.worker_id, ctx.stopping.is_set)


def alert_channels(_ctx: TaskContext, sessions: sessionmaker[Session], settings: Settings) -> int:
    """Tell the admins of mail channels failing too long (once, then daily)."""
    return channel_alerts.run(sessions, settings)


def run_jobs(ctx: TaskContext, sessions: sessionmaker[Session], settings: Settings) -> int:
    """Start, watch or finish a queued job (retraining) in a process of its own; a one-off round
    runs one here instead."""
    if ctx.jobs is None:
        return run_queued(sessions, settings, ctx.worker_id)
    return ctx.jobs.step(sessions, time.monotonic())


# In the order a round runs them. Staff notifications are not looked for after every batch (three
# queries each time, for nothing new), only once a second while mail streams in.
TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("poll-imap", poll_imap, RunsIn.MAIN_ONLY, enabled=_imap_configured),
    TaskSpec("process-inbound", process_inbound, RunsIn.EVERY_PROCESS),
    TaskSpec("notify-staff", notify_staff, RunsIn.EVERY_PROCESS, interval=NOTIFY_EVERY_SECONDS),
    TaskSpec("deliver-outbox", deliver_outbox, RunsIn.DELIVERY_LOOP),
    TaskSpec("run-jobs", run_jobs, RunsIn.MAIN_ONLY),
    TaskSpec(
        "alert-channels",
        alert_channels,
        RunsIn.MAIN_ONLY,
        interval=CHANNEL_ALERT_EVERY_SECONDS,
        enabled=_mail_servers_configured,
    ),
)


def worker_id() -> str:
    """A name for this worker process, stored on the outbox rows it claims."""
    return f"{socket.gethostname()}:{os.getpid()}"


def task_context(
    settings: Settings,
    sessions: sessionmaker[Session],
    stopping: threading.Event | None = None,
    delivery: Nudge | None = None,
    background_jobs: bool = False,
) -> TaskContext:
    """The context for one process's tasks, with the active model loaded now (none yet is fine).

    With `delivery`, the outbox is left to a loop of its own, which that nudge wakes whenever a
    batch has been processed. With `background_jobs`, jobs run in a process of their own.
    """
    inbound = InboundContext(
        settings, ModelProvider(sessions, settings.models_dir, settings.model_check_interval)
    )
    with contextlib.suppress(Exception):  # load the model now, not with the first email
        inbound.models.current()
    name = worker_id()
    jobs = JobRunner(settings, name) if background_jobs else None
    return TaskContext(inbound, stopping or threading.Event(), name, delivery, jobs=jobs)


def main_loop_specs(settings: Settings, role: Role, delivery_apart: bool) -> list[TaskSpec]:
    """The table's rows that a process's main loop runs, in order."""
    wanted = {RunsIn.EVERY_PROCESS}
    if role is Role.MAIN:
        wanted.add(RunsIn.MAIN_ONLY)
    if not delivery_apart:
        wanted.add(RunsIn.DELIVERY_LOOP)
    return [spec for spec in TASKS if spec.runs_in in wanted and spec.enabled(settings)]


def delivery_loop_specs(settings: Settings) -> list[TaskSpec]:
    """The table's rows that a delivery loop of its own runs."""
    return [
        spec for spec in TASKS if spec.runs_in is RunsIn.DELIVERY_LOOP and spec.enabled(settings)
    ]


def main_loop_tasks(ctx: TaskContext, role: Role = Role.MAIN) -> list[Task]:
    """The tasks of a process's main loop, ready for a Worker."""
    specs = main_loop_specs(ctx.settings, role, delivery_apart=ctx.delivery is not None)
    return [bind(spec, ctx) for spec in specs]


def delivery_loop_tasks(ctx: TaskContext) -> list[Task]:
    """The tasks of a delivery loop of its own, ready for a Worker."""
    return [bind(spec, ctx) for spec in delivery_loop_specs(ctx.settings)]


def bind(spec: TaskSpec, ctx: TaskContext) -> Task:
    """A table row as a Worker's task that runs with `ctx`, each time its interval allows."""
    return Task(spec.name, partial(_run_when_due, spec, ctx))


def _run_when_due(
    spec: TaskSpec, ctx: TaskContext, sessions: sessionmaker[Session], settings: Settings
) -> int:
    if not ctx.state.take_turn(spec.name, spec.interval, time.monotonic()):
        return 0
    return spec.run(ctx, sessions, settings)
