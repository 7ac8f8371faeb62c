"""Shared fixtures: every database test runs on SQLite and, with TEST_DATABASE_URL set, on PostgreSQL."""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import joblib
import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, insert, make_url, select, text
from sqlalchemy.orm import Session

from triage import create_app, schema
from triage.database import make_engine, make_session_factory
from triage.orm import Base

# Property tests draw the same examples on every run, so CI is repeatable; HYPOTHESIS_PROFILE=explore
# draws new ones (run it now and then to look for new failures, then pin what it finds as a test).
hypothesis_settings.register_profile("repeatable", derandomize=True)
hypothesis_settings.register_profile("explore", derandomize=False)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


def _worker_database(url: str) -> str:
    """TEST_DATABASE_URL for this test process: under pytest-xdist each worker gets a database of its own
    (`<name>_gw0`, `<name>_gw1`, ... created when missing), since tests empty and reseed theirs."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not url or not worker:
        return url
    parsed = make_url(url)
    name = f"{parsed.database}_{worker}"
    admin = make_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}) is None:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return parsed.set(database=name).render_as_string(hide_password=False)


PG_URL = _worker_database(os.environ.get("TEST_DATABASE_URL", ""))
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip PostgreSQL variants with a clear reason when TEST_DATABASE_URL is not set."""
    if PG_URL:
        return
    skip = pytest.mark.skip(reason="PostgreSQL variant: set TEST_DATABASE_URL to run it (CI does)")
    for item in items:
        if "postgresql" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once, copied for each test."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    schema.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def pg_seeded() -> Iterator[tuple[Engine, dict[str, list[dict[str, Any]]]]]:
    """PostgreSQL migrated to head once, with a snapshot of the seed rows to restore between tests."""
    engine = make_engine(PG_URL, pool_pre_ping=True)  # a fault test may kill its connections
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    schema.upgrade(engine)
    with engine.connect() as conn:
        snapshot = {
            t.name: [dict(r._mapping) for r in conn.execute(select(t))]
            for t in Base.metadata.sorted_tables
        }
    yield engine, snapshot
    engine.dispose()


def _restore_pg(engine: Engine, snapshot: dict[str, list[dict[str, Any]]]) -> None:
    names = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        for table in Base.metadata.sorted_tables:
            if snapshot[table.name]:
                conn.execute(insert(table), snapshot[table.name])
        for table in Base.metadata.sorted_tables:
            if snapshot[table.name]:
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), (SELECT max(id) FROM {table.name}))"
                    )
                )


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, seeded, otherwise empty database for one test."""
    if request.param == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        path = tmp_path / "test.db"
        shutil.copy(template, path)
        yield f"sqlite:///{path}"
        return
    engine, snapshot = request.getfixturevalue("pg_seeded")
    _restore_pg(engine, snapshot)
    yield PG_URL


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on the test database."""
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session on the test database."""
    with make_session_factory(engine)() as s:
        yield s


@pytest.fixture
def instance_path(tmp_path: Path) -> Path:
    """A fresh instance folder."""
    path = tmp_path / "instance"
    path.mkdir()
    return path


@pytest.fixture
def app_config(database_url: str, instance_path: Path, tmp_path: Path) -> dict[str, Any]:
    """Config overrides for a test app; tests may add to it before asking for `app`."""
    models = tmp_path / "models"
    models.mkdir()
    return {
        "TESTING": True,
        "DATABASE_URL": database_url,
        "INSTANCE_PATH": instance_path,
        "MODELS_DIR": models,
        "SECRET_KEY": "test-secret-" + uuid.uuid4().hex,
        # one SMTP connection, so a test reads the mail in the order it was queued; the delivery
        # tests and the bench set more to test sending in parallel
        "OUTBOX_CONNECTIONS": 1,
    }


@pytest.fixture
def app(app_config: dict[str, Any]) -> Iterator[Flask]:
    """The app under test."""
    application = create_app(app_config)
    yield application
    application.extensions["triage.engine"].dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client for the app."""
    return app.test_client()


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A real model trained once per test session on training_data/train.jsonl, saved to a models dir."""
    from triage.classifier import registry
    from triage.classifier.dataset import TRAIN_FILE, load_jsonl
    from triage.classifier.training import train

    # Test processes (pytest-xdist) share one training: the first trains while the others wait.
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    with (shared / "trained-model.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cached = shared / "trained-model.joblib"
        if cached.exists():
            result = joblib.load(cached)
        else:
            train_file = Path(__file__).resolve().parent.parent / "training_data" / TRAIN_FILE
            result = train(load_jsonl(train_file), None, "vtest-1", n_jobs=2)
            joblib.dump(result, cached.with_suffix(".part"))
            cached.with_suffix(".part").rename(cached)
    models_dir = tmp_path_factory.mktemp("models")
    registry.save(result.model, models_dir)
    return result, models_dir


@pytest.fixture
def model_app_config(app_config: dict[str, Any], trained_model) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """App config whose models directory holds the session's trained model."""
    app_config["MODELS_DIR"] = trained_model[1]
    return app_config


@pytest.fixture
def active_model(model_app_config: dict[str, Any], trained_model, session: Session):  # type: ignore[no-untyped-def]
    """Register and activate the session's trained model in this test's database."""
    from triage.classifier import registry

    result, _models_dir = trained_model
    registry.register(session, result.model, "test", True, "")
    registry.activate(session, result.model.version, "test")
    session.commit()
    return result.model


# --- mail servers -------------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SmtpRecorder:
    """aiosmtpd handler that records every accepted message, or answers with queued failure codes first."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.answers: list[str] = []
        self.open = (
            threading.Event()
        )  # cleared: every message waits at the end of DATA (a slow server)
        self.open.set()
        self.on_data: Callable[[], None] | None = (
            None  # called as each message arrives, before it is answered
        )
        self.peers: list[Any] = []  # the client address and port each accepted message came over
        self.drop_after: int | None = (
            None  # after accepting this many messages, close that connection once
        )

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        while not self.open.is_set():
            await asyncio.sleep(0.01)
        if self.on_data is not None:
            self.on_data()
        if self.answers:
            return self.answers.pop(0)
        self.messages.append(envelope)
        self.peers.append(session.peer)
        if self.drop_after == len(
            self.messages
        ):  # the answer goes out first, then the server hangs up
            asyncio.get_running_loop().call_soon(server.transport.close)
        return "250 OK"

    def parsed(self) -> list[Any]:
        """The accepted messages as EmailMessage objects."""
        from email import message_from_bytes, policy

        return [message_from_bytes(e.content, policy=policy.default) for e in self.messages]


@pytest.fixture
def smtp_server() -> Iterator[tuple[SmtpRecorder, int]]:
    """A real SMTP server (aiosmtpd) on a free loopback port."""
    from aiosmtpd.controller import Controller

    recorder = SmtpRecorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    yield recorder, port
    controller.stop()


@pytest.fixture
def smtp_app_config(app_config: dict[str, Any], smtp_server) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """App config with SMTP pointed at the test server (and no model: new mail goes to triage)."""
    app_config.update(
        {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": smtp_server[1],
            "SUPPORT_ADDRESS": "support@imi.test",
            "MODEL_CHECK_INTERVAL": 0.0,
        }
    )
    return app_config


@pytest.fixture
def smtp_app(smtp_app_config: dict[str, Any]) -> Iterator[Flask]:
    """The app, wired to the test SMTP server, without a model: for tests whose tickets come from
    tests/factories.py and whose mail is read at the server."""
    application = create_app(smtp_app_config)
    yield application
    application.extensions["triage.engine"].dispose()


@pytest.fixture
def mail_app_config(
    smtp_app_config: dict[str, Any], model_app_config: dict[str, Any]
) -> dict[str, Any]:
    """App config with the trained model and SMTP pointed at the test server (both fixtures fill in this
    test's one app_config)."""
    return model_app_config


@pytest.fixture
def mail_app(mail_app_config: dict[str, Any], active_model) -> Iterator[Flask]:  # type: ignore[no-untyped-def]
    """The app, wired to the test SMTP server, with an active model."""
    application = create_app(mail_app_config)
    yield application
    application.extensions["triage.engine"].dispose()


@pytest.fixture
def api_token(mail_app: Flask) -> str:
    """A live API token for the mail app."""
    from triage.helpdesk import tokens

    with mail_app.extensions["triage.sessions"]() as s:
        _row, plain = tokens.create_token(s, "tests")
        s.commit()
    return plain


@pytest.fixture(scope="module")
def dovecot() -> Iterator[int]:
    """A running Dovecot for the requesting test module (skips when it cannot run here); yields its port."""
    import tempfile

    from tests.imapserver import Dovecot, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    # not under pytest's 0700 temp folders: Dovecot's mail process runs as vmail and must reach the mail dir
    folder = Path(tempfile.mkdtemp(prefix="triage-dovecot-"))
    folder.chmod(0o755)
    server = Dovecot(folder, free_port())
    server.start()
    yield server.port
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


def default_sigint() -> None:
    """Popen preexec_fn: Ctrl-C (SIGINT) acts in the child even when this run ignores it (a shell starts
    background jobs with SIGINT ignored, and a child inherits that), so the signal tests mean the same anywhere."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
