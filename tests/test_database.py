"""SQLite as a multi-process database: writers queue on a lock file and never lose an update."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from triage.database import make_engine


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
    workers = [multiprocessing.get_context("spawn").Process(target=_increment, args=(url, 40)) for _ in range(3)]
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
    assert len(errors) == 1 and isinstance(errors[0], OperationalError) and "locked" in str(errors[0])
    stuck.rollback()
    stuck.close()
    with waiter.begin() as conn:  # and the lock is usable again afterwards
        conn.execute(text("INSERT INTO t VALUES (3)"))
    holder.dispose()
    waiter.dispose()
