"""IMI centre-enquiry triage service: the Flask application factory."""

from __future__ import annotations

from typing import Any

from flask import Flask

from triage.config import Settings


def configure_logging(settings: Settings) -> None:
    """Log as the settings say: JSON lines (LOG_FORMAT=json) or scrubbed text lines."""
    if settings.log_format == "json":
        from triage.web.observability import configure_json_logging

        configure_json_logging()
    else:
        from triage.logs import configure_text_logging

        configure_text_logging()


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the Flask app from environment settings, with optional overrides (tests pass these)."""
    settings = Settings.from_env()
    if config:
        settings.update(config)
    settings.prepare_instance()
    configure_logging(settings)
    app = Flask(__name__, instance_path=str(settings.instance_path))
    # believe X-Forwarded-For/-Proto/-Host from exactly that many proxies
    if settings.trusted_proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = settings.trusted_proxies
        # Flask documents wrapping wsgi_app in middleware, but types it as a method
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=n, x_proto=n, x_host=n
        )
    app.config["SECRET_KEY"] = settings.secret_key
    app.config["MAX_CONTENT_LENGTH"] = settings.inbound_max_bytes
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_SECURE"] = settings.secure_cookies
    app.config["REMEMBER_COOKIE_SECURE"] = settings.secure_cookies
    app.config["REMEMBER_COOKIE_HTTPONLY"] = True
    app.config["WTF_CSRF_TIME_LIMIT"] = (
        None  # tied to the session instead; a long shift must not lose a reply
    )
    app.config.update({k: v for k, v in settings.extra.items() if k.isupper()})
    app.extensions["triage.settings"] = settings

    from triage import commands
    from triage.web import init_app as init_web

    init_web(app)
    commands.init_app(app)
    return app
