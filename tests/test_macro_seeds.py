"""Macro seeds come from the catalogue: a fresh install's macros are what the catalogue says."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from tests.test_migrations import empty_engine  # noqa: F401  (a fixture)
from triage import catalogue, create_app
from triage.commands import migrate
from triage.helpdesk import macros
from triage.mail import compose
from triage.orm import Macro

Row = tuple[str | None, str, str]


def _catalogue_seeds() -> list[Row]:
    return sorted((c.slug, *macros.seed(c)) for c in catalogue.CATEGORIES)


def _macros(engine: Engine) -> list[Row]:
    with Session(engine) as session:
        return sorted((m.category, m.title, m.body) for m in session.scalars(select(Macro)))


def test_a_category_is_seeded_with_its_answer_or_its_staff_draft() -> None:
    for category in catalogue.CATEGORIES:
        title, body = macros.seed(category)
        assert title == (f"{category.number}. " if category.number else "") + category.title
        if category.self_serve:
            assert body == compose.answer_text(category)  # the template: one file to change
        else:
            assert body == category.staff_draft and body.strip() == body


def test_a_fresh_install_gets_the_catalogues_macros(empty_engine: Engine) -> None:
    migrate(empty_engine)
    assert _macros(empty_engine) == _catalogue_seeds()


def test_flask_triage_migrate_seeds_a_fresh_database(tmp_path: Path) -> None:
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}",
            "INSTANCE_PATH": tmp_path / "instance",
            "MODELS_DIR": tmp_path / "models",
            "SECRET_KEY": "test-secret-" + uuid.uuid4().hex,
        }
    )
    result = app.test_cli_runner().invoke(args=["triage", "migrate"])
    assert result.exit_code == 0, result.output
    assert _macros(app.extensions["triage.engine"]) == _catalogue_seeds()
    app.extensions["triage.engine"].dispose()


def test_seeding_a_new_table_replaces_drafts_older_than_the_catalogue(engine: Engine) -> None:
    """What a fresh install does when the catalogue's seeds differ from migration 0009's drafts."""
    with Session(engine) as session:
        session.execute(update(Macro).where(Macro.category == "exam_frozen").values(body="old"))
        session.execute(delete(Macro).where(Macro.category == "other"))
        macros.seed_from_catalogue(session)
        session.commit()
    assert _macros(engine) == _catalogue_seeds()


def test_migrate_leaves_an_existing_databases_macros_to_the_admins(engine: Engine) -> None:
    with Session(engine) as session:
        session.execute(update(Macro).where(Macro.category == "exam_frozen").values(body="ours"))
        session.execute(delete(Macro).where(Macro.category == "other"))
        session.commit()
    before = _macros(engine)
    migrate(engine)
    assert _macros(engine) == before
    assert ("exam_frozen", "5. Exam has frozen", "ours") in before
