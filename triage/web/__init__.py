"""Flask glue: per-request database sessions and blueprint registration."""

from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from triage.config import Settings
from triage.database import make_engine, make_session_factory
from triage.registry import ModelProvider


def init_app(app: Flask) -> None:
    """Attach the engine, session factory and blueprints to the app."""
    settings: Settings = app.extensions["triage.settings"]
    engine = make_engine(settings.database_url)
    app.extensions["triage.engine"] = engine
    app.extensions["triage.sessions"] = make_session_factory(engine)
    app.extensions["triage.models"] = ModelProvider(
        app.extensions["triage.sessions"], settings.models_dir, settings.model_check_interval
    )
    app.teardown_appcontext(_close_session)

    from triage.web import errors
    from triage.web.api import bp as api_bp
    from triage.web.health import bp as health_bp

    errors.init_app(app)
    app.register_blueprint(health_bp)
    app.register_blueprint(api_bp)


def settings() -> Settings:
    """The running app's settings."""
    return current_app.extensions["triage.settings"]


def engine() -> Engine:
    """The running app's database engine."""
    return current_app.extensions["triage.engine"]


def session_factory() -> sessionmaker[Session]:
    """The running app's session factory (for work outside a request)."""
    return current_app.extensions["triage.sessions"]


def db() -> Session:
    """The request's database session, opened on first use and closed at teardown."""
    if "db_session" not in g:
        g.db_session = session_factory()()
    return g.db_session


def _close_session(exc: BaseException | None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        if exc is not None:
            session.rollback()
        session.close()
