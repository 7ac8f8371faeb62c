"""SQLite as a multi-process database: writers queue on a lock file and never lose an update."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, func, select, text
from sqlalchemy.exc import OperationalError

from triage import database
from triage.database import make_engine, make_session_factory, statement_session
from triage.helpdesk import tokens
from triage.orm import ApiToken


def _lock_is_free(lock_path: Path) -> bool:
    fd = os.open(lock_path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _engine_with_table(path: Path, **kwargs: object) -> Engine:
    """A SQLite engine on a fresh file holding an empty table t (x INTEGER)."""
    engine = make_engine(f"sqlite:///{path}", **kwargs)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    return engine


def _increment(url: str, times: int) -> None:
    engine = make_engine(url)
    for _ in range(times):  # read-modify-write: loses updates unless writers are serialised
        with engine.begin() as conn:
            value = conn.execute(text("SELECT n FROM counter")).scalar_one()
            conn.execute(text("UPDATE counter SET n = :n"), {"n": value + 1})
    engine.dispose()


def test_writers_in_several_processes_never_lose_an_update(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE counter (n INTEGER NOT NULL)"))
        conn.execute(text("INSERT INTO counter VALUES (0)"))
    workers = [
        multiprocessing.get_context("spawn").Process(target=_increment, args=(url, 40))
        for _ in range(3)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    with engine.connect() as conn:
        assert conn.execute(text("SELECT n FROM counter")).scalar_one() == 120
    assert (tmp_path / "shared.db.writelock").exists()
    engine.dispose()


def test_the_writer_lock_is_released_by_commit_rollback_and_close(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    lock = tmp_path / "t.db.writelock"
    engine = _engine_with_table(db)
    assert _lock_is_free(lock)
    conn = engine.connect()
    conn.execute(text("INSERT INTO t VALUES (1)"))
    assert not _lock_is_free(lock)  # held for the whole transaction
    conn.rollback()
    assert _lock_is_free(lock)

    def fail_midway() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (2)"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail_midway()
    assert _lock_is_free(lock)
    conn = engine.connect()
    conn.execute(text("SELECT 1"))
    conn.close()  # returned to the pool, which rolls back
    assert _lock_is_free(lock)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 0
    engine.dispose()


def test_a_nested_transaction_in_one_thread_does_not_wait_for_itself(tmp_path: Path) -> None:
    engine = _engine_with_table(tmp_path / "n.db", connect_args={"timeout": 0.2})
    outer = engine.connect()
    outer.execute(text("INSERT INTO t VALUES (1)"))
    # SQLite itself refuses the second writer after its busy timeout; the lock file must not hang the thread
    with pytest.raises(Exception, match="locked"), engine.begin() as inner:
        inner.execute(text("INSERT INTO t VALUES (2)"))
    outer.commit()
    outer.close()
    engine.dispose()


def test_a_stuck_writer_makes_others_fail_after_the_timeout_not_hang(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    holder = _engine_with_table(tmp_path / "s.db")
    stuck = holder.connect()
    stuck.execute(text("INSERT INTO t VALUES (1)"))  # holds the write lock and never finishes
    waiter = make_engine(url, connect_args={"timeout": 0.3})
    # run in another thread: the same thread would (rightly) skip the queue, see the nested-transaction test
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with waiter.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES (2)"))
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=write)
    worker.start()
    worker.join(10)
    assert not worker.is_alive()
    assert (
        len(errors) == 1 and isinstance(errors[0], OperationalError) and "locked" in str(errors[0])
    )
    stuck.rollback()
    stuck.close()
    with waiter.begin() as conn:  # and the lock is usable again afterwards
        conn.execute(text("INSERT INTO t VALUES (3)"))
    holder.dispose()
    waiter.dispose()


# --- PostgreSQL: pooled connections the server dropped ------------------------------------------------------

PG_ONLY = [pytest.param("postgresql", marks=pytest.mark.postgresql)]


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(text("SELECT pg_backend_pid()")))


def _terminate(engine: Engine, pid: int) -> None:
    """End one server process (as a restart or a network cut would) and wait until it has gone."""
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        for _ in range(200):
            if not conn.scalar(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            ):
                return
            conn.rollback()
            time.sleep(0.01)
    raise AssertionError(f"backend {pid} did not end")


@contextmanager
def _pool_and_admin(url: str, size: int) -> Iterator[tuple[Engine, Engine]]:
    """An engine with a pool of `size` connections, and a second engine to end its server processes from."""
    engine, admin = make_engine(url, pool_size=size, max_overflow=0), make_engine(url)
    try:
        yield engine, admin
    finally:
        engine.dispose()
        admin.dispose()


@pytest.mark.parametrize("database_url", PG_ONLY, indirect=True)
def test_an_idle_pooled_connection_the_server_dropped_is_replaced_unseen(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _pool_and_admin(database_url, 1) as (engine, admin):
        dropped = _backend_pid(engine)
        _terminate(admin, dropped)
        monkeypatch.setattr(
            database, "PING_AFTER_IDLE_SECONDS", 0.0
        )  # it has idled long enough: pinged first
        assert _backend_pid(engine) != dropped  # a fresh connection, and no error for the caller


@pytest.mark.parametrize("database_url", PG_ONLY, indirect=True)
def test_a_busy_pooled_connection_the_server_dropped_fails_once_then_the_pool_recovers(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _pool_and_admin(database_url, 2) as (engine, admin):
        with engine.connect() as first, engine.connect() as second:  # two pooled connections
            pids = {
                first.scalar(text("SELECT pg_backend_pid()")),
                second.scalar(text("SELECT pg_backend_pid()")),
            }
        for pid in pids:
            _terminate(admin, int(pid))
        monkeypatch.setattr(
            database, "PING_AFTER_IDLE_SECONDS", 3600.0
        )  # in steady use: no ping per checkout
        with pytest.raises(OperationalError), engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        assert (
            _backend_pid(engine) not in pids
        )  # the failure invalidated the whole pool: the next one is fresh
        assert _backend_pid(engine) not in pids


def _statements(engine: Engine) -> list[str]:
    """A list that fills with every SQL statement the engine sends from now on."""
    sent: list[str] = []
    event.listen(
        engine, "before_cursor_execute", lambda _c, _cur, statement, *_rest: sent.append(statement)
    )
    return sent


@pytest.mark.parametrize("database_url", PG_ONLY, indirect=True)
def test_a_statement_session_commits_each_statement_at_once_on_one_held_connection(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    try:
        with statement_session(sessions) as session, engine.connect() as other:
            backend = session.scalar(text("SELECT pg_backend_pid()"))
            session.commit()
            _row, plain = tokens.create_token(
                session, "probe"
            )  # its INSERT is committed as it runs
            seen = other.scalar(
                select(func.count()).select_from(ApiToken).where(ApiToken.name == "probe")
            )
            assert seen == 1, (
                "another connection cannot see the statement's row: it was not committed at once"
            )
            session.commit()
            assert session.scalar(text("SELECT pg_backend_pid()")) == backend, (
                "a commit gave the connection back"
            )
            sent = _statements(engine)
            use = tokens.use_token(session, plain)
            assert use is not None and use.count == 1
            # the token's count is committed without waiting for the disk (a hot row, not the mail itself)...
            assert "set_config('synchronous_commit', 'off', true)" in sent[-1]
            # ...and only that statement: the next one (the webhook's INSERT) is durable before it answers
            assert session.scalar(text("SHOW synchronous_commit")) == "on"
    finally:
        engine.dispose()


@pytest.mark.parametrize("database_url", PG_ONLY, indirect=True)
def test_a_token_used_inside_a_transaction_leaves_that_transaction_durable(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            _row, plain = tokens.create_token(session, "probe")
            session.commit()
            sent = _statements(engine)
            assert (
                tokens.use_token(session, plain) is not None
            )  # in a transaction that may write more
            assert "synchronous_commit" not in sent[-1]
            assert session.scalar(text("SHOW synchronous_commit")) == "on"
    finally:
        engine.dispose()
