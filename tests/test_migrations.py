"""Migrations and models agree, and upgrade/downgrade both work, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text

from tests.conftest import BACKENDS, PG_URL
from triage import schema
from triage.database import make_engine


@pytest.fixture(params=BACKENDS)
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a database (or PostgreSQL schema) with nothing in it."""
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
        yield eng
        eng.dispose()
        return
    name = f"mig_{uuid.uuid4().hex[:12]}"
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {name}"))
    eng = make_engine(PG_URL, connect_args={"options": f"-csearch_path={name}"})
    yield eng
    eng.dispose()
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {name} CASCADE"))
    admin.dispose()


def test_upgrade_matches_models_and_downgrade_empties(empty_engine: Engine) -> None:
    assert schema.current_revision(empty_engine) is None
    schema.upgrade(empty_engine)
    assert schema.current_revision(empty_engine) == schema.head_revision()
    assert schema.pending_model_changes(empty_engine) == []
    schema.ensure_current(empty_engine)
    schema.downgrade(empty_engine)
    assert set(inspect(empty_engine).get_table_names()) <= {"alembic_version"}
    schema.upgrade(empty_engine)  # and back up again cleanly
    assert schema.pending_model_changes(empty_engine) == []


def test_ensure_current_names_the_command_to_run(empty_engine: Engine) -> None:
    from triage.config import ConfigError

    with pytest.raises(ConfigError, match="triage migrate"):
        schema.ensure_current(empty_engine)
