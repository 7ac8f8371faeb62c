"""The worker's task list, built from what the settings enable."""

from __future__ import annotations

from triage.config import Settings
from triage.worker import Task


def default_tasks(settings: Settings) -> list[Task]:
    """Tasks the worker runs each round, in order."""
    tasks: list[Task] = []
    return tasks
