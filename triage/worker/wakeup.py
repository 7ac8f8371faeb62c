"""Waking idle workers when new mail is stored: LISTEN/NOTIFY on PostgreSQL, a check on SQLite."""

from __future__ import annotations

import contextlib
import logging
import select
import sqlite3
import threading
import time
from typing import Any

from sqlalchemy import Engine

from triage.new_mail_signal import CHANNEL

log = logging.getLogger(__name__)

SQLITE_CHECK_SECONDS = 0.1  # how often an idle SQLite worker looks for another process's commit


class Waker:
    """Lets an idle worker sleep until new mail may be waiting, a timeout passes, or it must stop.

    PostgreSQL: a connection of its own LISTENs on CHANNEL, so a webhook's NOTIFY wakes it at once.
    SQLite (one machine): `PRAGMA data_version` on a connection of its own changes when any other
    connection commits, which is checked every SQLITE_CHECK_SECONDS without taking any lock.
    Anything else, or a failing listener, falls back to sleeping for the timeout.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pg: Any = None
        self._sqlite: sqlite3.Connection | None = None
        self._version: int | None = None

    def wait(self, timeout: float, stopping: threading.Event) -> bool:
        """Sleep up to `timeout` seconds; True if woken by new work, False on timeout or stop."""
        deadline = time.monotonic() + timeout
        try:
            if self.engine.dialect.name == "postgresql":
                return self._wait_pg(deadline, stopping)
            if self.engine.dialect.name == "sqlite" and self._sqlite_path():
                return self._wait_sqlite(deadline, stopping)
        except Exception as exc:  # the listener is an optimisation: never let it stop the worker
            log.warning("worker wake-up channel failed, falling back to polling: %s", exc)
            self.close()
        stopping.wait(max(0.0, deadline - time.monotonic()))
        return False

    def close(self) -> None:
        """Close the listening connection, if any."""
        for conn in (self._pg, self._sqlite):
            if conn is not None:
                with contextlib.suppress(Exception):  # closing a broken connection
                    conn.close()
        self._pg = self._sqlite = None

    def _wait_pg(self, deadline: float, stopping: threading.Event) -> bool:
        if self._pg is None:
            import psycopg

            url = self.engine.url.set(drivername="postgresql")
            self._pg = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
            self._pg.execute(f"LISTEN {CHANNEL}")
        while not stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            readable, _, _ = select.select([self._pg.fileno()], [], [], min(remaining, 0.5))
            if readable and list(self._pg.notifies(timeout=0)):
                return True
        return False

    def _sqlite_path(self) -> str | None:
        database = self.engine.url.database
        return (
            database
            if database and database != ":memory:" and not database.startswith("file:")
            else None
        )

    def _wait_sqlite(self, deadline: float, stopping: threading.Event) -> bool:
        if self._sqlite is None:
            self._sqlite = sqlite3.connect(
                self._sqlite_path() or "", isolation_level=None, check_same_thread=False
            )
            self._version = self._sqlite.execute("PRAGMA data_version").fetchone()[0]
        while not stopping.is_set():
            version = self._sqlite.execute("PRAGMA data_version").fetchone()[0]
            if version != self._version:
                self._version = version
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            stopping.wait(min(remaining, SQLITE_CHECK_SECONDS))
        return False
