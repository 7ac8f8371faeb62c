"""Flask glue: per-request database sessions, security headers, template filters and blueprints."""

from __future__ import annotations

import secrets
from contextlib import ExitStack

from flask import Flask, Response, abort, current_app, g, request
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import Session, sessionmaker

from triage.classifier.registry import ModelProvider
from triage.config import Settings
from triage.database import make_engine, make_session_factory, statement_session
from triage.states import (
    AuditAction,
    InboundStatus,
    IncidentStatus,
    LinkKind,
    MessageDirection,
    MessageKind,
    ModelStatus,
    TicketStatus,
)
from triage.web import formatting

# the enums templates compare with (`t.status == TicketStatus.RESOLVED`), as template globals
TEMPLATE_STATES = (
    TicketStatus,
    MessageDirection,
    MessageKind,
    InboundStatus,
    ModelStatus,
    AuditAction,
    IncidentStatus,
    LinkKind,
)

csrf = CSRFProtect()


def init_app(app: Flask) -> None:
    """Attach the engine, session factory, model provider, security and blueprints to the app."""
    settings: Settings = app.extensions["triage.settings"]
    engine = make_engine(settings.database_url)
    app.extensions["triage.engine"] = engine
    app.extensions["triage.sessions"] = make_session_factory(engine)
    app.extensions["triage.model_provider"] = ModelProvider(
        app.extensions["triage.sessions"], settings.models_dir, settings.model_check_interval
    )
    app.url_value_preprocessor(_ids_within_integer_range)
    app.teardown_appcontext(_close_session)
    app.before_request(_new_nonce)
    app.after_request(_security_headers)
    formatting.init_app(app)
    app.context_processor(lambda: {"csp_nonce": g.get("csp_nonce", "")})
    app.jinja_env.globals.update({state.__name__: state for state in TEMPLATE_STATES})

    from triage.web import (  # noqa: F401 (their routes join the api blueprint)
        admin,
        api,
        api_incidents,
        api_tickets,
        dashboard,
        errors,
        feedback,
        health,
        incidents,
        login,
        observability,
        openapi,
        provider_webhooks,
        sso,
        staff,
    )

    csrf.init_app(app)
    csrf.exempt(api.bp)
    csrf.exempt(observability.bp)
    csrf.exempt(feedback.bp)  # no login, no session: the signed link is the proof
    observability.init_app(app)
    login.init_app(app)
    sso.init_app(app)
    errors.init_app(app)
    blueprints = (health.bp, api.bp, login.bp, staff.bp, incidents.bp, dashboard.bp, admin.bp)
    for blueprint in (*blueprints, feedback.bp):
        app.register_blueprint(blueprint)


MAX_ID = 2**31 - 1  # the largest value an INTEGER primary key holds (PostgreSQL int4)


def _ids_within_integer_range(_endpoint: str | None, values: dict[str, object] | None) -> None:
    """A route's <int:...> id past what the database can hold names nothing: 404, not a database
    error."""
    if values and any(isinstance(v, int) and v > MAX_ID for v in values.values()):
        abort(404)


def settings() -> Settings:
    """The running app's settings."""
    settings: Settings = current_app.extensions["triage.settings"]
    return settings


def session_factory() -> sessionmaker[Session]:
    """The running app's session factory (for work outside a request)."""
    factory: sessionmaker[Session] = current_app.extensions["triage.sessions"]
    return factory


def db() -> Session:
    """The request's database session, opened on first use and closed at teardown."""
    if "db_session" not in g:
        g.db_session = session_factory()()
    session: Session = g.db_session
    return session


def statement_db() -> Session:
    """The request's session for single statements that each commit at once (the token check, the
    webhook's INSERT): a `statement_session`, one round trip per statement on PostgreSQL. Kept apart
    from `db()`, whose writes stay one transaction."""
    if "statement_session" not in g:
        g.statement_scope = ExitStack()
        g.statement_session = g.statement_scope.enter_context(statement_session(session_factory()))
    session: Session = g.statement_session
    return session


def _close_session(exc: BaseException | None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        if exc is not None:
            session.rollback()
        session.close()
    g.pop("statement_session", None)
    scope: ExitStack | None = g.pop("statement_scope", None)
    if scope is not None:
        scope.close()  # its statements are committed already: closing gives the connection back


def _new_nonce() -> None:
    g.csp_nonce = secrets.token_urlsafe(16)


def _security_headers(response: Response) -> Response:
    nonce = g.get("csp_nonce", "")
    response.headers.setdefault(
        "Content-Security-Policy",
        f"default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self'; "
        "img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'",
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.endpoint != "static":  # staff pages, API answers: never kept by a browser or a proxy
        response.headers["Cache-Control"] = "no-store"
    if settings().secure_cookies:  # served over HTTPS: browsers must never fall back to plain HTTP
        response.headers.setdefault(
            "Strict-Transport-Security", "max-age=31536000; includeSubDomains"
        )
    return response
