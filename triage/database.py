"""Engine and session factory for SQLite (embedded) and PostgreSQL (production)."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError, DisconnectionError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from triage.config import ConfigError


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys and a busy timeout so several processes can
    share it."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"DATABASE_URL is not a valid database URL: {url!r}") from None
    kwargs.setdefault("hide_parameters", True)  # no SQL parameters (tokens, mail) in errors or logs
    if parsed.get_backend_name() == "sqlite":
        # how long a writer waits for the lock: 30 s, or ?timeout=SECONDS in the URL
        connect_args: dict[str, Any] = {} if "timeout" in parsed.query else {"timeout": 30}
        if (
            parsed.database
            and parsed.database != ":memory:"
            and not parsed.database.startswith("file:")
        ):
            connect_args["factory"] = _writer_lock_factory(parsed.database + ".writelock")
        kwargs["connect_args"] = {**connect_args, **kwargs.get("connect_args", {})}
        engine = create_engine(parsed, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    try:
        engine = create_engine(parsed, **kwargs)
    except (ImportError, ArgumentError) as exc:
        raise ConfigError(
            f"DATABASE_URL {parsed.render_as_string(hide_password=True)} cannot be used: {exc}"
        ) from None
    if not kwargs.get("pool_pre_ping"):
        event.listen(engine, "checkin", _note_checkin)
        event.listen(engine, "checkout", _ping_if_idle(engine))
    return engine


PING_AFTER_IDLE_SECONDS = (
    5.0  # a pooled connection unused this long is checked before it is handed out
)


def _note_checkin(_dbapi_conn: DBAPIConnection | None, record: ConnectionPoolEntry) -> None:
    record.info["checked_in"] = time.monotonic()


def _ping_if_idle(
    engine: Engine,
) -> Callable[[DBAPIConnection, ConnectionPoolEntry, PoolProxiedConnection], None]:
    """A checkout hook that pings only connections that have sat idle in the pool (pre-ping, minus
    its cost on a busy server: one round trip per checkout). A failed ping makes the pool replace
    the connection.

    A connection in steady use that the server drops (a restart, a network cut) fails its next
    statement instead; SQLAlchemy then invalidates the whole pool, so that request answers 503 and
    the next one gets a fresh connection.
    """

    def ping(
        dbapi_conn: DBAPIConnection, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
    ) -> None:
        # None: a connection made just now for this checkout
        last_used = record.info.get("checked_in")
        if last_used is None or time.monotonic() - last_used < PING_AFTER_IDLE_SECONDS:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(f"pooled connection failed its ping: {exc}") from exc
        if not alive:
            raise DisconnectionError("pooled connection failed its ping")

    return ping


@contextmanager
def statement_session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose statements each commit on their own on PostgreSQL: autocommit, one round trip
    each (no BEGIN or COMMIT), on one connection held until the session closes (a commit does not
    hand it back to the pool). On SQLite (local calls, one writer at a time) an ordinary session,
    which keeps transactions."""
    engine = sessions.kw.get("bind")
    if not isinstance(engine, Engine) or engine.dialect.name != "postgresql":
        with sessions() as session:
            yield session
        return
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        with sessions(bind=connection) as session:
            yield session


def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy control transactions (pysqlite's own handling breaks BEGIN IMMEDIATE).
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # Take the write lock at BEGIN so two writers queue instead of failing to upgrade a read lock.
    dbapi_conn = conn.connection.dbapi_connection
    # :memory: and file: URLs have no lock file
    if not isinstance(dbapi_conn, _WriterLockConnection):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        return
    dbapi_conn.acquire_writer_lock()
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    except BaseException:
        dbapi_conn.release_writer_lock()
        raise


_held = threading.local()


class _WriterLockConnection(sqlite3.Connection):
    """A SQLite connection that queues for the write lock on a lock file (flock) before BEGIN
    IMMEDIATE.

    SQLite's own busy handler polls with sleeps of up to 100 ms, so under load most of the waiting
    is sleeping; this polls the lock file every few milliseconds, so the next writer starts almost
    as soon as the lock is free. The wait is bounded by the connection's timeout (then "database is
    locked", which the web app answers with 503), and the kernel drops the lock if its holder dies.
    A thread that already holds the lock (a nested transaction) does not queue behind itself: it
    falls back to SQLite's busy timeout.
    """

    lock_path = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock_fd: int | None = None
        self._lock_timeout = float(kwargs.get("timeout", 5.0))

    def acquire_writer_lock(self) -> None:
        """Wait for this database's writer lock (no-op if this thread already holds it)."""
        if getattr(_held, "depth", 0):
            return
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline, pause = time.monotonic() + self._lock_timeout, 0.0005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise OperationalError(
                        "BEGIN IMMEDIATE",
                        None,
                        sqlite3.OperationalError(
                            f"database is locked (no write lock within {self._lock_timeout:g} s)"
                        ),
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.005)
        self._lock_fd = fd
        _held.depth = 1

    def release_writer_lock(self) -> None:
        """Release the writer lock if this connection holds it."""
        fd = self._lock_fd
        if fd is not None:
            self._lock_fd = None
            _held.depth = 0
            os.close(fd)  # closing the descriptor releases the flock

    def commit(self) -> None:
        """Commit, then let the next writer in."""
        try:
            super().commit()
        finally:
            self.release_writer_lock()

    def rollback(self) -> None:
        """Roll back, then let the next writer in."""
        try:
            super().rollback()
        finally:
            self.release_writer_lock()

    def close(self) -> None:
        """Close, releasing the writer lock if held."""
        try:
            super().close()
        finally:
            self.release_writer_lock()


def _writer_lock_factory(lock_path: str) -> type[_WriterLockConnection]:
    return type("WriterLockConnection", (_WriterLockConnection,), {"lock_path": lock_path})


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return a session factory whose objects stay usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Open a session, commit on success, roll back on any exception, always close."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def check_connection(engine: Engine) -> None:
    """Raise ConfigError with one readable line if the database cannot be reached."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = (
            str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            if str(exc)
            else type(exc).__name__
        )
        url = engine.url.render_as_string(hide_password=True)
        raise ConfigError(f"cannot reach the database at {url}: {reason}") from None


_DISK_FULL_SQLSTATE = "53100"  # PostgreSQL disk_full
_SQLITE_FULL = 13  # SQLITE_FULL: "database or disk is full"


def disk_full(exc: BaseException) -> bool:
    """Whether a database error means its disk is full (PostgreSQL or SQLite)."""
    original = getattr(exc, "orig", None) or exc
    if getattr(original, "sqlstate", None) == _DISK_FULL_SQLSTATE:
        return True
    if getattr(original, "sqlite_errorcode", None) == _SQLITE_FULL:
        return True
    return "No space left on device" in str(original)
