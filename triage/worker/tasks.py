"""The worker's task list, built from what the settings enable."""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from triage.classifier.registry import ModelProvider
from triage.config import Settings
from triage.helpdesk import notifications
from triage.mail import imap
from triage.mail.inbound import InboundContext, process_pending, receive
from triage.mail.outbox import deliver_due
from triage.worker.jobs import run_queued
from triage.worker.loop import Nudge, Task

NOTIFY_EVERY_SECONDS = (
    1.0  # while mail streams in, staff notifications are looked for once a second
)


def worker_id() -> str:
    """A name for this worker process, stored on the outbox rows it claims."""
    return f"{socket.gethostname()}:{os.getpid()}"


def default_tasks(
    settings: Settings,
    sessions: sessionmaker[Session],
    stopping: threading.Event | None = None,
    helper: bool = False,
    delivery: Nudge | None = None,
) -> list[Task]:
    """Tasks the worker runs each round, in order: poll the inbox, process stored mail, deliver the outbox, jobs.

    `stopping` (the worker's shutdown flag) lets long tasks end early and hand unfinished work back.
    A `helper` (an extra process of `worker --processes N`) only processes mail and delivers replies:
    one process per host polls the inbox and runs jobs. With `delivery`, the outbox is left to a loop of its
    own (`delivery_tasks`, in another thread), which this nudge wakes whenever a batch has been processed.
    """
    stop = stopping or threading.Event()
    ctx = InboundContext(
        settings, ModelProvider(sessions, settings.models_dir, settings.model_check_interval)
    )
    with contextlib.suppress(
        Exception
    ):  # load the model now, not with the first email (none yet is fine)
        ctx.models.current()
    me = worker_id()
    tasks: list[Task] = []
    if settings.imap_host and not helper:
        tasks.append(
            Task(
                "poll-imap",
                lambda s, st: imap.poll(
                    s,
                    st,
                    lambda raw: receive(s, ctx, raw, "imap", keep_unparseable=True),
                    should_stop=stop.is_set,
                ),
            )
        )
    last_batch = [0]  # how many emails the last processing round handled
    tasks.append(
        Task(
            "process-inbound",
            lambda s, _st: _count(last_batch, _process_then_nudge(s, ctx, stop, delivery)),
        )
    )
    tasks.append(
        Task("notify-staff", notify_staff(notifications.run, streaming=lambda: last_batch[0] > 0))
    )
    if delivery is None:
        tasks.extend(delivery_tasks(stop))
    if not helper:
        tasks.append(Task("run-jobs", lambda s, st: run_queued(s, st, me)))
    return tasks


def notify_staff(
    run: Callable[[sessionmaker[Session], Settings], int], streaming: Callable[[], bool]
) -> Callable[[sessionmaker[Session], Settings], int]:
    """The staff-notification task: after every round when the worker is about to idle, but at most once a
    second while mail streams in (not after every batch: three queries each time, for nothing new)."""
    last = -math.inf

    def notify(sessions: sessionmaker[Session], settings: Settings) -> int:
        nonlocal last
        now = time.monotonic()
        if streaming() and now - last < NOTIFY_EVERY_SECONDS:
            return 0
        last = now
        return run(sessions, settings)

    return notify


def _count(last: list[int], processed: int) -> int:
    last[0] = processed
    return processed


def delivery_tasks(stopping: threading.Event) -> list[Task]:
    """The outbox delivery task alone (for a delivery loop in a thread of its own)."""
    me = worker_id()
    return [Task("deliver-outbox", lambda s, st: deliver_due(s, st, me, stopping.is_set))]


def _process_then_nudge(
    sessions: sessionmaker[Session],
    ctx: InboundContext,
    stopping: threading.Event,
    delivery: Nudge | None,
) -> int:
    processed = process_pending(sessions, ctx, should_stop=stopping.is_set)
    if processed and delivery is not None:
        delivery.wake()  # its replies are committed: send them now, while the next batch is processed
    return processed
