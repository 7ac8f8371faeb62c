"""Outage watches: one log line when a dependency (the database, a mail transport) starts failing,
a warning once it has failed for longer than a set time, then a reminder at most every few
minutes, and a line when it works again; never one line per failed row."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)


class Outage:
    """The failure state of one dependency of this process, logged sparingly (thread-safe)."""

    def __init__(
        self,
        what: str,
        warn_after: float,
        remind_every: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.warn_after = warn_after
        self.remind_every = remind_every
        self._clock = clock
        self._lock = threading.Lock()
        self.since: float | None = None  # when the current failure began (clock time)
        self.reason = ""
        self.failures = 0
        self._last_warned: float | None = None

    def failed(self, reason: str) -> None:
        """Note a failure; logs at its start, once it lasts `warn_after`, then every
        `remind_every`."""
        with self._lock:
            now = self._clock()
            self.reason = reason
            self.failures += 1
            if self.since is None:
                self.since = now
                log.info("%s failing: %s", self.what, reason)
                return
            lasted = now - self.since
            due = self._last_warned is None or now - self._last_warned >= self.remind_every
            if lasted >= self.warn_after and due:
                self._last_warned = now
                log.warning(
                    "%s has been failing for %d s (%d failures): %s",
                    self.what,
                    lasted,
                    self.failures,
                    reason,
                )

    def succeeded(self) -> None:
        """Note that the dependency works (again)."""
        with self._lock:
            if self.since is None:
                return
            lasted = self._clock() - self.since
            warned = self._last_warned is not None
            self.since, self._last_warned, self.failures, self.reason = None, None, 0, ""
        (log.warning if warned else log.info)("%s works again after %d s", self.what, lasted)


_WATCHES: dict[str, Outage] = {}
_WATCHES_LOCK = threading.Lock()


def watch(what: str, warn_after: float, remind_every: float) -> Outage:
    """This process's watch for `what` (made on first use; its times follow the latest call)."""
    with _WATCHES_LOCK:
        outage = _WATCHES.get(what)
        if outage is None:
            outage = _WATCHES[what] = Outage(what, warn_after, remind_every)
        outage.warn_after, outage.remind_every = warn_after, remind_every
        return outage


def describe_database_error(exc: SQLAlchemyError) -> str:
    """A database error in one line without SQL or parameters (safe to log)."""
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else type(exc).__name__).strip()
    first_line = text.splitlines()[0] if text else ""
    return f"{type(original or exc).__name__}: {first_line}"[:300]
