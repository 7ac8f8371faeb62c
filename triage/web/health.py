"""GET /healthz: ok or unavailable for anyone; database, model and outbox details with a `metrics`
token."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError

from triage import health
from triage.mail import channels
from triage.web import db, settings
from triage.web.auth import bearer_token

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Report service health; 503 when the database or the model is unavailable.

    Load balancers get only {"status": "ok" | "unavailable"}; the model version and the outbox
    backlog are shown to a bearer token with the `metrics` scope.
    """
    detailed = "Authorization" in request.headers
    if detailed:
        bearer_token("metrics")
    try:
        config = settings()
        report = health.check(
            db(), config.models_dir, channels.load(config), config.channel_alert_minutes
        )
    except SQLAlchemyError as exc:
        db().rollback()
        body = {
            "status": "unavailable",
            "database": {"ok": False, "error": type(exc).__name__},
            "model": None,
        }
        return jsonify(body if detailed else {"status": "unavailable"}), 503
    ok = report["status"] == "ok"
    if not detailed:
        return jsonify({"status": "ok" if ok else "unavailable"}), 200 if ok else 503
    return jsonify(report), 200 if ok else 503
